"""The training console line (issue 29 item 11): step/total and the ETA stay whole at 80 columns."""

from __future__ import annotations

import re
import time
from io import StringIO

import pytest
from rich.console import Console

from medgen_cli.engine.logging import RunLogger

METRICS = {"train/loss/g": 0.123456, "train/loss/l1": 0.0456789, "train/stats/kl": 12345.678,
           "train/grad_norm/g": 3.21}


def _last_line(width: int) -> str:
    buf = StringIO()
    console = Console(file=buf, width=width, force_terminal=True, color_system=None)
    logger = RunLogger(None, True, total_steps=10000, start_step=0, console=console, tensorboard=False)
    with logger:
        logger.progress(1, 0, METRICS)
        time.sleep(0.05)  # an ETA needs a measured speed
        logger.progress(1234, 3, METRICS)
    lines = [line for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue()).replace("\r", "\n").splitlines()
             if line.strip()]
    return lines[-1]


@pytest.mark.parametrize("width", [80, 120])
def test_progress_keeps_step_and_eta(width: int) -> None:
    line = _last_line(width)
    assert len(line) <= width, line
    assert "1234/10000" in line, line
    assert re.search(r"eta \d+:\d\d:\d\d", line), line  # whole, not "0:0…"
    assert "loss" not in line or "…" not in line.split("1234/10000")[0], line


def test_metrics_are_shortened_not_the_counters() -> None:
    line = _last_line(80)
    assert "g=0.1235" in line, line  # 4 significant digits, the group names dropped
