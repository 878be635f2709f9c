"""`medgen data make-cbct`: round trip, NIfTI resampling, resume, bad inputs; recon metrics."""

from __future__ import annotations

import math
import os
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medgen_cli.cli.app import app
from medgen_cli.data import cbct
from medgen_cli.data.cbct.geometry import CBCTGeometry
from medgen_cli.errors import MedgenError
from medgen_cli.metrics.recon import psnr, ssim
from medgen_cli.recon.classical import classical_recon

runner = CliRunner()


def invoke(args: list[str]) -> object:
    return runner.invoke(app, args)


def test_make_cbct_round_trip(cbct_data: Path) -> None:
    from diffct import Projector, circular_trajectory_3d

    files = sorted(cbct_data.glob("*/*.h5"))
    assert len(files) == 12
    assert {f.parent.name for f in files} == {"train", "val", "test"}
    assert len({f.stem for f in files}) == 12  # every case in exactly one split
    geo = CBCTGeometry().scaled(16)
    case = cbct.read_case(next(iter(sorted((cbct_data / "test").glob("*.h5")))))
    assert case.geometry == geo
    index = int(case.name.split("_")[1])
    expected = np.clip((cbct.phantom_hu(16, index) + 1000.0) / 2024.0, 0, 1)  # HU window by hand
    np.testing.assert_allclose(case.volume, expected, atol=1e-6)
    np.testing.assert_allclose(case.angles, np.arange(50) * math.pi / 50)
    # Projections equal diffct's, called here with the raw numbers (not through the geometry module).
    traj = circular_trajectory_3d(torch.tensor(case.angles, dtype=torch.float32), sid=800.0, sdd=1200.0, device="cpu")
    ref = Projector(traj, (16, 16, 16), (16, 16), detector_spacing=614.4 / 16, voxel_spacing=409.6 / 16,
                    backend="torch").project(torch.tensor(expected, dtype=torch.float32))
    np.testing.assert_allclose(case.projections, ref.numpy(), rtol=1e-5, atol=1e-4)
    with h5py.File(next(iter(sorted((cbct_data / "train").glob("*.h5")))), "r") as f:
        assert f.attrs["geometry_dso"] == 800.0 and f["projections"].shape == (50, 16, 16)


def test_make_cbct_cli_resumes_and_refuses_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "d"
    r = invoke(["data", "make-cbct", "--synthetic", "4", "--size", "8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    files = sorted(out.glob("*/*.h5"))
    assert len(files) == 4
    victim = files[0]
    stamp = victim.stat().st_mtime_ns
    files[1].unlink()  # an interrupted run: one case missing
    r = invoke(["data", "make-cbct", "--synthetic", "4", "--size", "8", "--out", str(out)])
    assert r.exit_code == 0 and "1 written, 3 kept" in r.output.replace("\n", " ")
    assert victim.stat().st_mtime_ns == stamp and files[1].is_file()
    r = invoke(["data", "make-cbct", "--synthetic", "4", "--size", "12", "--out", str(out)])
    assert isinstance(r.exception, MedgenError) and "other settings" in str(r.exception)
    assert "\n" not in str(r.exception)
    r = invoke(["data", "make-cbct", "--synthetic", "4", "--size", "12", "--out", str(out), "--overwrite"])
    assert r.exit_code == 0 and cbct.read_case(victim).geometry.volume_size == 12
    assert not list(out.rglob("*.part*"))  # no half-written files left behind


def test_make_cbct_from_nifti_resamples_and_keeps_world_positions(tmp_path: Path) -> None:
    geo = CBCTGeometry().scaled(8)
    hu = cbct.phantom_hu(8, 3)                                   # (z, y, x) on the target grid
    fine = np.kron(hu.transpose(2, 1, 0), np.ones((2, 2, 2)))    # NIfTI (x, y, z) at half the spacing
    affine = np.diag([geo.voxel_spacing / 2] * 3 + [1.0])
    affine[:3, 3] = [-30.0, 12.0, 7.0]
    src = tmp_path / "in"
    src.mkdir()
    nib.save(nib.Nifti1Image(fine.astype(np.float32), affine), str(src / "ct1.nii.gz"))
    r = invoke(["data", "make-cbct", str(src), "--size", "8", "--out", str(tmp_path / "d"),
                "--val-fraction", "0", "--test-fraction", "0", "--allow-truncation"])
    assert r.exit_code == 0, r.output
    case = cbct.read_case(tmp_path / "d" / "train" / "ct1.h5")
    # Smoothed before down-sampling, so compare loosely against the windowed coarse phantom.
    assert np.mean(np.abs(case.volume - cbct.window(hu))) < 0.03
    # Output voxel (0,0,0) sits at the centre of input voxels 0..1 along each axis.
    centre_in = affine @ np.array([0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(case.affine @ np.array([0, 0, 0, 1.0]), centre_in, atol=1e-4)  # float32 header


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), str(src / "four_d.nii.gz"))
    r = invoke(["data", "make-cbct", str(src), "--size", "8", "--out", str(tmp_path / "a")])
    assert isinstance(r.exception, MedgenError) and "3D" in str(r.exception)
    (src / "four_d.nii.gz").unlink()
    # A water cube filling the whole box: its corners leave the detector.
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.diag([51.2] * 3 + [1])), str(src / "box.nii.gz"))
    r = invoke(["data", "make-cbct", str(src), "--size", "8", "--out", str(tmp_path / "b")])
    assert isinstance(r.exception, MedgenError) and "field of view" in str(r.exception)
    r = invoke(["data", "make-cbct", str(src), "--size", "8", "--out", str(tmp_path / "c"), "--allow-truncation",
                "--val-fraction", "0", "--test-fraction", "0"])
    assert r.exit_code == 0, r.output
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as f:
        f["volume"] = np.zeros((4, 4, 4))
    with pytest.raises(MedgenError, match="no CBCT geometry"):
        cbct.read_case(bare)
    r = invoke(["data", "make-cbct", "--out", str(tmp_path / "e")])
    assert isinstance(r.exception, MedgenError)
    for err in [e for e in (r.exception,) if isinstance(e, MedgenError)]:
        assert "\n" not in str(err)


def test_recon_metrics_match_scikit_image() -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    ref = rng.random((12, 12, 12))
    pred = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1)
    assert psnr(pred, ref) == pytest.approx(peak_signal_noise_ratio(ref, pred, data_range=1.0))
    assert psnr(pred, ref) == pytest.approx(-10 * math.log10(np.mean((pred - ref) ** 2)))
    assert ssim(pred, ref) == pytest.approx(structural_similarity(ref, pred, data_range=1.0, win_size=7))
    assert ssim(ref, ref) == pytest.approx(1.0) and math.isinf(psnr(ref, ref))
    with pytest.raises(MedgenError):
        psnr(ref[:4], ref)


def test_classical_baselines_recover_a_phantom(cbct_data: Path) -> None:
    case = cbct.read_case(next(iter(sorted((cbct_data / "test").glob("*.h5")))))
    fdk = classical_recon(case, 50, "fdk")
    sirt = classical_recon(case, 10, "sirt", iterations=20)
    empty = np.zeros_like(case.volume)
    assert psnr(fdk, case.volume) > psnr(empty, case.volume) + 8
    assert psnr(sirt, case.volume) > psnr(empty, case.volume) + 8
    with pytest.raises(MedgenError, match="views"):
        classical_recon(case, 51, "fdk")
    assert os.environ.get("OMP_NUM_THREADS") == "1"
