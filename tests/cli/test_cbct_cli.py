"""`medgen recon` and `medgen eval recon`: NIfTI with the input's affine, metrics, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import yaml
from typer.testing import CliRunner

from medgen_cli.cli.app import app
from medgen_cli.data import cbct
from medgen_cli.data.cbct.geometry import CBCTGeometry
from medgen_cli.errors import MedgenError
from medgen_cli.metrics.recon import psnr
from medgen_cli.recon.classical import classical_recon

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _test_case(cbct_data: Path) -> Path:
    return next(iter(sorted((cbct_data / "test").glob("*.h5"))))


def test_recon_case_file_keeps_the_case_affine(trained_run: Path, cbct_data: Path, tmp_path: Path) -> None:
    case_path = _test_case(cbct_data)
    case = cbct.read_case(case_path)
    out = tmp_path / "recon.nii.gz"
    r = runner.invoke(app, ["recon", str(trained_run), "--input", str(case_path), "--views", "10", "--out", str(out),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, case.affine, atol=1e-5)
    vol = np.asarray(img.dataobj).transpose(2, 1, 0)  # NIfTI (x, y, z) → case (z, y, x)
    assert vol.shape == (16, 16, 16) and 0.0 <= vol.min() and vol.max() <= 1.0
    assert psnr(vol, case.volume) > 18.0
    r = runner.invoke(app, ["recon", str(trained_run), "--input", str(case_path), "--out", str(out)])
    assert isinstance(r.exception, MedgenError) and "exists" in str(r.exception)  # no silent overwrite


def test_recon_nifti_input_keeps_its_grid_and_affine(trained_run: Path, tmp_path: Path) -> None:
    geo = CBCTGeometry().scaled(16)
    hu = cbct.phantom_hu(16, 42).transpose(2, 1, 0)[2:14, 1:15, :]   # a cropped (x, y, z) volume
    affine = np.array([[0, -geo.voxel_spacing, 0, 40.0], [geo.voxel_spacing, 0, 0, -12.0],
                       [0, 0, geo.voxel_spacing, 3.0], [0, 0, 0, 1]])
    src = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu.astype(np.float32), affine), str(src))
    geo_file = tmp_path / "geometry.yaml"
    geo_file.write_text(yaml.safe_dump(geo.model_dump()))  # baselines need a geometry; a run has its own
    baseline = ["--geometry", str(geo_file)]
    for method, extra in (("model", [str(trained_run)]), ("fdk", baseline), ("sirt", [*baseline, "--iterations", "5"])):
        out = tmp_path / f"{method}.nii.gz"
        r = runner.invoke(app, ["recon", *extra, "--method", method, "--input", str(src), "--views", "10",
                                "--out", str(out), "--device", "cpu"])
        assert r.exit_code == 0, (method, r.output, r.exception)
        img = nib.load(str(out))
        assert img.shape == hu.shape
        np.testing.assert_allclose(img.affine, affine, atol=1e-5)
        # Same grid as the input: the reconstruction correlates with the windowed input voxel by voxel.
        corr = np.corrcoef(np.asarray(img.dataobj).ravel(), cbct.window(hu).ravel())[0, 1]
        assert corr > 0.8, (method, corr)


def test_eval_recon_json_matches_recomputed_metrics(trained_run: Path, cbct_data: Path) -> None:
    r = runner.invoke(app, ["eval", "recon", str(trained_run), "--data", str(cbct_data / "test"), "--views", "10",
                            "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["views"] == 10 and res["data_range"] == 1.0 and len(res["cases"]) == 1
    r2 = runner.invoke(app, ["eval", "recon", "--method", "fdk", "--data", str(cbct_data / "test"), "--json"])
    fdk = json.loads(r2.output)
    case = cbct.read_case(_test_case(cbct_data))
    expected = psnr(classical_recon(case, 10, "fdk"), case.volume)
    assert abs(fdk["mean"]["psnr"] - expected) < 1e-6
    assert res["mean"]["psnr"] > fdk["mean"]["psnr"]
    r3 = runner.invoke(app, ["eval", "recon", "--method", "sirt", "--iterations", "5", "--data",
                             str(cbct_data / "test"), "--views", "6"])
    assert r3.exit_code == 0 and "SSIM" in r3.output and "mean" in r3.output


def test_bad_inputs(trained_run: Path, cbct_data: Path, tmp_path: Path) -> None:
    case_path = _test_case(cbct_data)
    # A view count the run was not trained for.
    r = runner.invoke(app, ["recon", str(trained_run), "--input", str(case_path), "--views", "6",
                            "--out", str(tmp_path / "x.nii.gz")])
    assert isinstance(r.exception, MedgenError) and "trained for [10] views" in str(r.exception)
    # A case file without geometry.
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as f:
        f["projections"] = np.zeros((50, 16, 16), np.float32)
    r = runner.invoke(app, ["recon", "--method", "fdk", "--input", str(bare), "--out", str(tmp_path / "y.nii.gz")])
    assert isinstance(r.exception, MedgenError) and "geometry" in str(r.exception)
    # A volume that is not 3D.
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.float32), np.eye(4)), str(flat))
    r = runner.invoke(app, ["recon", "--method", "fdk", "--input", str(flat), "--out", str(tmp_path / "z.nii.gz")])
    assert isinstance(r.exception, MedgenError) and "3D" in str(r.exception)
    # Model recon without a run; an unknown method.
    r = runner.invoke(app, ["recon", "--input", str(case_path), "--out", str(tmp_path / "w.nii.gz")])
    assert isinstance(r.exception, MedgenError)
    r = runner.invoke(app, ["eval", "recon", "--method", "art", "--data", str(cbct_data / "test")])
    assert isinstance(r.exception, MedgenError) and "unknown method" in str(r.exception)


def test_cli_error_is_one_red_line(trained_run: Path, cbct_data: Path, subprocess_env: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-m", "medgen_cli", "eval", "recon", str(trained_run), "--data",
                        str(cbct_data / "test"), "--views", "7"], cwd=REPO, env=subprocess_env, text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "7" in lines[0] and "Traceback" not in r.stderr
