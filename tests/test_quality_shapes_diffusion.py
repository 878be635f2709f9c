"""``python -m benchmarks.quality_shapes --family diffusion`` end to end on a tiny budget (slow suite).

The data is made as ``benchmarks.make_shape_data`` makes it, through medgen's CLI (``data synth-h5``
then ``data convert-h5 -m gaussian``); the benchmark runs as a subprocess from the repository root
(tests never import ``benchmarks``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _medgen(args: list[str], env: dict[str, str]) -> None:
    res = subprocess.run([sys.executable, "-m", "medgen_cli", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def _shape_set(root: Path, env: dict[str, str]) -> Path:
    """24 phantom clouds at 16^3 (gaussian), a third in val/: 8 val shapes for --num 4, and 16
    training volumes for the CPU autoencoder preset's batch of 8."""
    h5, data = root / "shapes.h5", root / "data"
    _medgen(["data", "synth-h5", "--out", str(h5), "--n", "24", "--points", "512", "--seed", "0"], env)
    _medgen(["data", "convert-h5", str(h5), "--out", str(data), "-r", "16", "-m", "gaussian", "--val-fraction", "0.34",
             "--seed", "0", "--workers", "1"], env)
    assert len(list((data / "val").glob("*.nii.gz"))) >= 4 and len(list((data / "train").glob("*.nii.gz"))) >= 8
    return data


def _fraction(value: object) -> bool:
    return isinstance(value, float | int) and 0.0 <= float(value) <= 1.0


@pytest.mark.slow  # two 5-step trainings, 4 samples of 30 steps, scoring (~20-60 s on one core)
def test_diffusion_shape_benchmark_end_to_end(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    data = _shape_set(tmp_path, subprocess_env)
    out = tmp_path / "diffusion16.json"
    cmd = [sys.executable, "-m", "benchmarks.quality_shapes", "--family", "diffusion", "--data", str(data),
           "--size", "16", "--ae-steps", "5", "--steps", "5", "--minutes", "2", "--num", "4", "--points", "64", "--no-fid",
           "--work", str(tmp_path / "work"), "--json", str(out)]
    res = subprocess.run(cmd, cwd=REPO, env=subprocess_env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    report = json.loads(out.read_text())
    assert report["family"] == "diffusion" and report["size"] == 16 and report["method"] == "gaussian"
    # The step budgets normally end both stages (a few seconds each); on a crowded machine the
    # minutes may come first (the diffusion stage gets at least half a minute after the AE's).
    assert 1 <= report["ae_steps"] <= 5 and 1 <= report["steps"] <= 5
    assert 0 < report["minutes"] < 3 and report["minutes"] == pytest.approx(
        report["ae_minutes"] + report["diffusion_minutes"], abs=0.02)
    for side in ("generated", "real_vs_real"):
        m = report[side]
        assert _fraction(m["1nna_cd"]) and _fraction(m["cov_cd"]), (side, m)
        assert math.isfinite(m["mmd_cd"]) and m["mmd_cd"] >= 0, (side, m)
    # 1-NNA of 4 vs 4 shapes and COV of 4 shapes move in steps of 1/8 and 1/4.
    assert (8 * report["real_vs_real"]["1nna_cd"]).is_integer() and (4 * report["generated"]["cov_cd"]).is_integer()
    assert math.isfinite(report["ae_psnr"]) and report["ae_psnr"] > 0
    assert -1.0 <= report["ae_ssim"] <= 1.0
    ceiling = report["ae_ceiling"]  # the autoencoder's reconstructions of real B scored as samples
    assert _fraction(ceiling["1nna_cd"]) and _fraction(ceiling["cov_cd"]) and ceiling["mmd_cd"] >= 0
    assert math.isfinite(report["s_per_sample"]) and report["s_per_sample"] > 0
    assert "fid_2_5d" not in report  # --no-fid
    assert len(list((tmp_path / "work" / "samples").rglob("*.nii.gz"))) == 4

    png = out.with_suffix(".png")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as img:  # 4 rows of real | generated MIPs: wider than tall
        assert img.width > img.height > 0
