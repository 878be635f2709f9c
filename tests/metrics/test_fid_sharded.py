"""``medgen eval fid --nproc 2`` (two gloo processes under torchrun) gives one process's value,
and the reference-statistics cache behaves as without --nproc (written once, by rank 0; then read)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _fid(*args: object, nproc: int = 1) -> tuple[dict, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    r = subprocess.run([sys.executable, "-m", "medgen_cli", "eval", "fid", *map(str, args), "--device", "cpu",
                        "--dims", "64", "--json", "--nproc", str(nproc)],
                       cwd=REPO, env=env, text=True, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout[r.stdout.index("{"):]), r.stderr


def _volumes(folder: Path, n: int, seed: int, offset: float = 0.0) -> None:
    import nibabel as nib

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        v = rng.normal(100.0 + offset, 30.0, size=(8, 8, 6 + i % 2)).astype(np.float32)  # two shapes
        nib.save(nib.Nifti1Image(v, np.eye(4)), str(folder / f"vol_{i}.nii.gz"))


def test_sharded_image_fid_equals_single_and_caches_once(fid_env: Path, make_images, tmp_path: Path) -> None:
    real, fake = tmp_path / "real", tmp_path / "fake"
    make_images(real, 11, seed=0)  # batches of 4: 4 + 4 + 3, split 1 | 2 batches over the ranks
    make_images(fake, 9, seed=1, shift=0.25)
    one, _ = _fid(real, fake, "--batch-size", "4", "--no-cache", "--kid", "--kid-subsets", "5")
    two, _ = _fid(real, fake, "--batch-size", "4", "--no-cache", "--kid", "--kid-subsets", "5", nproc=2)
    assert one["fid"] > 0 and abs(two["fid"] - one["fid"]) <= 1e-6 * one["fid"], (one["fid"], two["fid"])
    assert two["kid"] == one["kid"]  # KID sees every feature row, in the same order
    assert (two["real"]["n"], two["fake"]["n"]) == (11, 9)
    # The cache: computed and stored by the sharded run, then read (by a sharded and a single run).
    first, _ = _fid(real, fake, "--batch-size", "4", nproc=2)
    again, _ = _fid(real, fake, "--batch-size", "4", nproc=2)
    single, _ = _fid(real, fake, "--batch-size", "4")
    assert [r["real"]["source"] for r in (first, again, single)] == ["computed", "cache", "cache"]
    assert len(list((Path(os.environ["MEDGEN_CACHE_DIR"]) / "fid").glob("*.npz"))) == 1
    assert abs(again["fid"] - one["fid"]) <= 1e-6 * one["fid"] and single["fid"] == again["fid"]


def test_sharded_volume_fid_equals_single(fid_env: Path, tmp_path: Path) -> None:
    real, fake = tmp_path / "real", tmp_path / "fake"
    _volumes(real, 3, seed=0)
    _volumes(fake, 3, seed=1, offset=20.0)
    one, err1 = _fid(real, fake, "--no-cache")
    two, err2 = _fid(real, fake, "--no-cache", nproc=2)
    for plane, row in one["planes"].items():
        assert abs(two["planes"][plane]["fid"] - row["fid"]) <= 1e-6 * row["fid"], plane
    assert two["real"]["samples"] == one["real"]["samples"]
    assert ("different shapes" in err1) and ("different shapes" in err2)  # warnings from every rank's volumes
    assert err2.count("different shapes") == err1.count("different shapes")  # printed by rank 0 alone
