"""``python -m benchmarks.gpu_gan2d`` without a GPU: one line, exit 0, nothing written.

The benchmark runs as a subprocess from the repository root; tests never import ``benchmarks``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_without_cuda_it_says_so_and_exits_0(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    # CUDA is hidden from the script, so this checks the no-GPU path on a GPU machine as well.
    env = {**subprocess_env, "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "gpu.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.gpu_gan2d", "--json", str(out),
                          "--sets-root", str(tmp_path / "no-sets")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_gan2d: no CUDA device"), res.stdout
    assert not out.exists() and not (tmp_path / "gpu_samples").exists()
