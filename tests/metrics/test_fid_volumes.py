"""2.5D FID on small NIfTI volumes, against slices pushed through pytorch-fid by hand."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from typer.testing import CliRunner

from medgen_cli.cli.app import app
from medgen_cli.errors import MedgenError
from medgen_cli.metrics.fid.volumes import central_indices, normalize


def write_volumes(folder: Path, n: int, seed: int, shape=(8, 8, 8), offset: float = 0.0) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vols = []
    for i in range(n):
        v = (rng.normal(100.0 + offset, 30.0, size=shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(v, np.eye(4)), str(folder / f"vol_{i}.nii.gz"))
        vols.append(v)
    return vols


def invoke(*args: str):
    return CliRunner().invoke(app, ["eval", "fid", *args, "--device", "cpu", "--dims", "64"])


def run(*args: str) -> dict:
    res = invoke(*args, "--json")
    if res.exception is not None:
        raise res.exception
    return json.loads(res.stdout[res.stdout.index("{"):])


def reference_plane_features(vols: list[np.ndarray], axis: int, keep: slice) -> np.ndarray:
    """Independent path: per-volume min-max, slices by np.take, pytorch-fid's InceptionV3 block 0."""
    from pytorch_fid.inception import InceptionV3
    from torch.nn.functional import adaptive_avg_pool2d

    model = InceptionV3([0]).eval()
    feats = []
    for v in vols:
        v = (v - v.min()) / (v.max() - v.min())
        idx = np.arange(v.shape[axis])[keep]
        sl = torch.from_numpy(np.stack([np.take(v, i, axis=axis) for i in idx]))
        x = sl.float()[:, None].repeat(1, 3, 1, 1)
        with torch.no_grad():
            feats.append(adaptive_avg_pool2d(model(x)[0], (1, 1)).squeeze(3).squeeze(2).numpy().astype(np.float64))
    return np.concatenate(feats)


def test_central_indices_and_window() -> None:
    assert central_indices(8, 0.5) == range(2, 6)
    assert central_indices(9, 1.0) == range(0, 9)
    assert len(central_indices(3, 0.01)) == 1
    np.testing.assert_allclose(normalize(np.array([-2000.0, -1000, 12, 1024, 3000]), (-1000, 1024)),
                               [0, 0, 1012 / 2024, 1, 1])
    assert normalize(np.full((2, 2, 2), 7.0)).max() == 0
    with pytest.raises(MedgenError):
        central_indices(8, 0.0)


def test_two_point_five_d_fid_per_plane(fid_env, tmp_path) -> None:
    real = write_volumes(tmp_path / "real", 3, seed=0)
    fake = write_volumes(tmp_path / "fake", 3, seed=1, offset=40.0)
    fake[0][:2] = 0  # not symmetric, so the planes differ
    nib.save(nib.Nifti1Image(fake[0], np.eye(4)), str(tmp_path / "fake" / "vol_0.nii.gz"))
    out = run(str(tmp_path / "real"), str(tmp_path / "fake"), "--center-fraction", "0.5", "--kid")
    assert set(out["planes"]) == {"sagittal", "coronal", "axial"}
    assert out["fid"] == pytest.approx(np.mean([p["fid"] for p in out["planes"].values()]))
    assert out["real"]["samples"] == 3 * 4  # 4 central slices of 8, per volume
    for axis, plane in enumerate(["sagittal", "coronal", "axial"]):
        r = reference_plane_features(real, axis, slice(2, 6))
        f = reference_plane_features(fake, axis, slice(2, 6))
        expected = calculate_frechet_distance(np.mean(r, 0), np.cov(r, rowvar=False),
                                              np.mean(f, 0), np.cov(f, rowvar=False))
        assert out["planes"][plane]["fid"] == pytest.approx(expected, rel=1e-6)
    assert all(np.isfinite(p["kid"]) for p in out["planes"].values())


def test_volume_stats_npz_roundtrip_and_shapes(fid_env, tmp_path) -> None:
    write_volumes(tmp_path / "real", 2, seed=0)
    write_volumes(tmp_path / "fake", 1, seed=1)
    write_volumes(tmp_path / "fake2", 1, seed=2, shape=(6, 8, 10))
    (tmp_path / "fake2" / "vol_0.nii.gz").rename(tmp_path / "fake" / "vol_z.nii.gz")
    stats = tmp_path / "real.npz"
    res = invoke(str(tmp_path / "real"), str(tmp_path / "fake"), "--save-stats", str(stats), "--json")
    assert res.exception is None, res.output
    assert "different shapes" in res.stderr
    direct = json.loads(res.stdout[res.stdout.index("{"):])
    with np.load(stats) as f:
        assert {"mu_axial", "sigma_sagittal"} <= set(f.files)
    again = run(str(stats), str(tmp_path / "fake"))
    assert again["fid"] == pytest.approx(direct["fid"], rel=1e-12)


def test_volume_bad_inputs(fid_env, tmp_path, make_images) -> None:
    write_volumes(tmp_path / "real", 2, seed=0)
    bad = tmp_path / "bad"
    write_volumes(bad, 1, seed=1)
    (bad / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    res = invoke(str(tmp_path / "real"), str(bad))
    assert isinstance(res.exception, MedgenError) and "broken.nii.gz" in str(res.exception)
    flat = tmp_path / "flat"
    flat.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), str(flat / "slice.nii"))
    res = invoke(str(tmp_path / "real"), str(flat))
    assert isinstance(res.exception, MedgenError) and "not a 3D volume" in str(res.exception)
    make_images(tmp_path / "imgs", 2, seed=0)
    res = invoke(str(tmp_path / "real"), str(tmp_path / "imgs"))
    assert isinstance(res.exception, MedgenError) and "REAL holds volumes but FAKE holds images" in str(res.exception)
    res = invoke(str(tmp_path / "real"), str(tmp_path / "real"), "--window", "5,1")
    assert isinstance(res.exception, MedgenError) and "window" in str(res.exception)
