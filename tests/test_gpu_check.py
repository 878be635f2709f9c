"""``python -m benchmarks.gpu_check``: its no-GPU line (fast) and its CPU smoke mode (slow).

The benchmark runs as a subprocess from the repository root; tests never import ``benchmarks``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_without_cuda_it_says_so_and_exits_0(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    # CUDA is hidden from the script, so this checks the no-GPU path on a GPU machine as well.
    env = {**subprocess_env, "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "gpu.json"
    res = _run(["--json", str(out)], env, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA device"), res.stdout
    assert not out.exists()  # nothing measured, nothing written


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow  # four short trainings and two AMP checks at 16^3 (~30-60 s on one core)
def test_cpu_smoke_writes_finite_measurements(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = tmp_path / "gpu.json"
    res = _run(["--device", "cpu", "--size", "16", "--steps", "2", "--json", str(out)], subprocess_env, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    report = json.loads(out.read_text())
    assert {"device_name", "torch", "cuda", "size", "steps", "tolerance", "presets"} <= set(report)
    assert report["device_name"].startswith("cpu") and report["size"] == 16 and report["steps"] == 2
    assert set(report["presets"]) == {"autoencoder", "diffusion"}
    for family, preset_batch in (("autoencoder", 8), ("diffusion", 16)):
        entry = report["presets"][family]
        assert entry["config"] == f"configs/gpu/{family}.yaml"
        assert [r["batch"] for r in entry["runs"]] == [2, preset_batch]
        for r in entry["runs"]:
            assert r["amp"] == "bf16" and r["steps_timed"] == 2
            assert _finite(r["s_per_step"]) and r["s_per_step"] > 0, r
            assert _finite(r["peak_rss_gb"]) and r["peak_rss_gb"] > 0
            assert r["peak_allocated_gb"] is None and r["peak_reserved_gb"] is None  # no CUDA memory on the CPU
        assert entry["runs"][0]["rtx3090"]["s_per_step"] == pytest.approx(
            {"autoencoder": 1.8, "diffusion": 0.96}[family])
        check = entry["amp_vs_fp32"]
        for key in ("loss_fp32", "loss_bf16", "loss_rel_err", "output_rel_l2"):
            assert _finite(check[key]), (family, key, check)
        # bf16 is not fp32: some difference must show, and it stays within the stated bound.
        assert 0 < check["output_rel_l2"] <= report["tolerance"]["output_rel_l2"]
        assert check["loss_rel_err"] <= report["tolerance"]["loss_rel"] and check["within_tolerance"] is True
