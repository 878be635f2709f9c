"""``stats/data_wait``: the share of step time spent waiting for a batch, measured where the
trainer fetches batches and logged with every metrics line."""

from __future__ import annotations

import json
import time
from pathlib import Path

from medgen_cli.config.build import build_config
from medgen_cli.engine.data_wait import DATA_WAIT, DataWaitMeter
from medgen_cli.engine.launch import train_from_config


def _slow_batches(n: int, delay: float):
    for i in range(n):
        time.sleep(delay)
        yield i


def test_share_of_a_slow_loader() -> None:
    # Fetching takes 30 ms, the step 10 ms: 75% of the time waits for data.
    meter = DataWaitMeter()
    for _ in meter.timed(_slow_batches(5, 0.03)):
        time.sleep(0.01)
        meter.step_done()
    assert 0.6 < meter.share() < 0.9
    meter.reset()
    assert meter.share() == 0.0
    # A fast loader and a slow step: close to 0.
    for _ in meter.timed(_slow_batches(5, 0.0)):
        time.sleep(0.02)
        meter.step_done()
    assert 0.0 <= meter.share() < 0.1


def test_time_between_steps_is_not_counted() -> None:
    # Validation or checkpoints after step_done (here: 50 ms) are neither wait nor step.
    meter = DataWaitMeter()
    for _ in meter.timed(_slow_batches(3, 0.0)):
        time.sleep(0.01)
        meter.step_done()
        time.sleep(0.05)
    assert meter.share() < 0.2


def test_trainer_logs_data_wait_in_unit_range(tmp_path: Path) -> None:
    cfg = build_config("toy", overrides=[f"output_dir={tmp_path / 'runs'}", "trainer.max_steps=6",
                                         "trainer.log_every=2", "trainer.val_every=1000"])
    run = train_from_config(cfg)
    assert run is not None
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    waits = {r["step"]: r[DATA_WAIT] for r in records if DATA_WAIT in r}
    assert sorted(waits) == [2, 4, 6]
    assert all(0.0 <= w <= 1.0 for w in waits.values())
    # A timing is no training metric: the resume contract compares train/* only.
    assert not any(k.startswith("train/") and "data_wait" in k for r in records for k in r)
