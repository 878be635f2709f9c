"""stdout holds results only (issue 29, item 11): no blank lines from progress bars (one per
interpolation frame, one before --json), --json is exactly one JSON document, and an error is
one stderr line without a blank line before it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest



@pytest.fixture
def cli(cli_streams):  # noqa: ANN001, ANN201
    """``medgen ARGS``: (exit code, stdout, stderr) (tests/conftest.py)."""
    return cli_streams


def test_inference_progress_writes_nothing_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.engine.run_loading import load_run

    run = train_from_config(build_config("toy", overrides=["trainer.max_steps=1", f"output_dir={tmp_path}"]))
    ctx = load_run(run, device="cpu").ctx
    capsys.readouterr()
    for _frame in range(3):  # what a diffusion `interpolate` does: one sampling loop per frame
        assert list(ctx.track(iter(range(4)), 4, "sampling")) == [0, 1, 2, 3]
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("args", [["fid", "{a}", "{b}", "--dims", "7"], ["shapes", "{a}", "{b}"]])
def test_eval_errors_are_one_stderr_line(tmp_path: Path, cli: Any, args: list[str]) -> None:
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    code, out, err = cli("eval", *[a.format(a=tmp_path / "a", b=tmp_path / "b") for a in args])
    assert code == 2 and out == ""
    assert err.startswith("error:") and len(err.splitlines()) == 1, repr(err)


def test_eval_recon_json_is_one_document(cbct_data: Path, subprocess_env: dict[str, str]) -> None:
    # A subprocess: stdout is a pipe, as in `medgen eval recon ... --json | jq`.
    r = subprocess.run([sys.executable, "-m", "medgen_cli", "eval", "recon", "--method", "fdk", "--data",
                        str(cbct_data / "test"), "--views", "10", "--json"], env=subprocess_env, text=True,
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)   # the whole of stdout is the document...
    assert r.stdout.startswith("{") and r.stdout.endswith("}\n")   # ...and no blank line around it
    assert result["method"] == "fdk" and len(result["cases"]) == 1
