"""``medgen sample --nproc 2`` (two gloo processes under torchrun) writes what one process writes.

Tiny runs from configs/tiny trained for one step: a 2D GAN (png and npy) and a class-conditional
diffusion run (NIfTI; batches of 3 start at odd seeds, so each sample's class must follow its seed,
not its position in a rank's batch).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.families.test_inference_contract import _images, _train, _volumes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sharded")
    images, volumes, out = _images(root / "img"), _volumes(root / "vol"), root / "runs"
    ae = _train("autoencoder", "autoencoder.yaml", out, f"data.root={volumes}", "name=ae")
    return {"fastgan": _train("fastgan", "fastgan.yaml", out, f"data.root={images}"),
            "diffusion": _train("diffusion", "diffusion.yaml", out, f"autoencoder_run={ae}", "name=cond",
                                "conditioning.enabled=true")}


def _medgen(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medgen_cli", *map(str, args)], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=600)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` except the previews (PNG metadata may differ), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "preview" not in p.parts}


@pytest.mark.parametrize("family,args", [
    ("fastgan", ["--num", "7", "--batch-size", "2", "--seed", "5", "--format", "png,npy"]),
    ("diffusion", ["--num", "7", "--batch-size", "3", "--steps", "2", "--format", "nifti"]),
])
def test_sharded_sample_equals_single_process(family: str, args: list[str], runs: dict[str, Path], tmp_path: Path,
                                              subprocess_env: dict[str, str]) -> None:
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    r = _medgen(["sample", runs[family], "--out", single, *args], subprocess_env)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _medgen(["sample", runs[family], "--out", sharded, "--nproc", "2", *args], subprocess_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("wrote 7 file") + r.stderr.count("wrote 14 file") == 1, r.stderr  # rank 0 reports once
    a, b = _files(single), _files(sharded)
    assert sorted(a) == sorted(b) and len(a) in (8, 16)  # 7 samples + manifest.json per format
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
    manifest = json.loads((sharded / ("manifest.json" if family == "diffusion" else "npy/manifest.json")).read_text())
    seed0 = 5 if family == "fastgan" else 0
    assert [e["seed"] for e in manifest] == list(range(seed0, seed0 + 7))
    if family == "diffusion":
        assert [e["label"] for e in manifest] == [s % 2 for s in range(7)]
    assert (sharded / "preview" / "grid.png").is_file()


def test_sharded_sample_refuses_before_starting(runs: dict[str, Path], tmp_path: Path,
                                                subprocess_env: dict[str, str]) -> None:
    """A bad flag is one line and exit 2 from the launching process (no torchrun, no line per rank)."""
    r = _medgen(["sample", runs["fastgan"], "--out", tmp_path / "o", "--nproc", "2", "--truncation", "0.5"],
                subprocess_env)
    assert r.returncode == 2 and "do not take --truncation" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "torch.distributed" not in r.stderr, r.stderr


def test_rank_batches_cover_each_batch_once() -> None:
    from medgen_cli.engine.sharded import rank_batches

    got = [rank_batches(10, 3, r, 3) for r in range(3)]
    assert [len(g) for g in got] == [2, 2, 2]  # 4 batches over 3 ranks: 2 rounds each
    flat = sorted(b for g in got for b in g if b is not None)
    assert flat == [(0, 3), (3, 3), (6, 3), (9, 1)]
    assert got[1][1] is None and got[2][1] is None
    assert np.array_equal([b for b in rank_batches(4, 8, 0, 2)], [(0, 4)])
