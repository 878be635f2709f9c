"""``medgen demo`` end to end with tiny settings (synthetic H5 → NIfTI → AE → diffusion → samples)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medgen_cli.cli.app import app
from medgen_cli.errors import MedgenError

TINY = ["--size", "16", "--ae-steps", "2", "--diffusion-steps", "2", "--num-samples", "2", "--sample-steps", "2", "--no-fid",
        "--num-volumes", "6", "--device", "cpu"]


def test_demo_runs_the_whole_pipeline(tmp_path: Path) -> None:
    import nibabel as nib

    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), *TINY])
    assert res.exit_code == 0, (res.output, res.exception)
    assert (out / "synth.h5").is_file() and (out / "volumes" / "manifest.json").is_file()
    assert list((out / "volumes" / "train").glob("*.nii.gz"))
    for run in ("autoencoder/ae", "diffusion/diffusion"):
        assert (out / "runs" / run / "checkpoints" / "latest.pt").is_file()
    samples = sorted((out / "samples").glob("sample_*.nii.gz"))
    assert len(samples) == 2 and nib.load(str(samples[0])).shape == (16, 16, 16)
    assert (out / "samples_grid.png").stat().st_size > 0 and (out / "data_grid.png").stat().st_size > 0
    assert "medgen demo finished" in res.output and "Try next" in res.output

    # a second run refuses to overwrite without --overwrite
    again = CliRunner().invoke(app, ["demo", "--out", str(out), *TINY])
    assert isinstance(again.exception, MedgenError) and "already exists" in str(again.exception)


def test_demo_never_deletes_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "important.txt").write_text("keep me")
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "mine"), "--overwrite", *TINY])
    assert isinstance(res.exception, MedgenError) and "not made by" in str(res.exception)
    assert (tmp_path / "mine" / "important.txt").read_text() == "keep me"


@pytest.mark.parametrize("size", ["18"])
def test_demo_checks_the_size(tmp_path: Path, size: str) -> None:
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--size", size])
    assert isinstance(res.exception, MedgenError) and "multiple of 4" in str(res.exception)
    assert not (tmp_path / "d").exists()
