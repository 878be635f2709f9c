"""`medgen data make-cbct` warns about a case with nothing to learn (issue 29, item 9b): constant
inside the field of view (all air: volume and projections all 0), or one grey level (a T1 volume
scaled to [0, 1] read as HU); such cases were written without a word. A warning, not a refusal:
a uniform water cube is a legitimate test object (tests/data/test_cbct.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medgen_cli.cli.app import main
from medgen_cli.io import save_nifti


def _make_cbct(capsys: pytest.CaptureFixture[str], volumes: Path, out: Path) -> tuple[int, list[str]]:
    """(exit code, the warning lines)."""
    with pytest.raises(SystemExit) as exc:
        main(["data", "make-cbct", str(volumes), "--out", str(out), "--size", "16",
              "--val-fraction", "0", "--test-fraction", "0"])
    err = capsys.readouterr().err
    return int(exc.value.code or 0), [line for line in err.splitlines() if line.startswith("warning:")]


def _head(unit: bool) -> np.ndarray:
    """A 24³ ball at 8 mm voxels: in [0, 1] (a T1 template) or in HU (tissue in air)."""
    grid = np.stack(np.meshgrid(*[np.arange(24)] * 3, indexing="ij"), -1)
    ball = np.linalg.norm(grid - 11.5, axis=-1) < 8
    return np.where(ball, 0.8, 0.0).astype(np.float32) if unit else np.where(ball, 40.0, -1000.0).astype(np.float32)


def test_a_volume_in_unit_range_read_as_hu_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_nifti(_head(unit=True), tmp_path / "vols" / "t1.nii.gz", affine=np.diag([8.0, 8.0, 8.0, 1.0]))
    save_nifti(_head(unit=False), tmp_path / "vols" / "ct.nii.gz", affine=np.diag([8.0, 8.0, 8.0, 1.0]))
    code, warnings = _make_cbct(capsys, tmp_path / "vols", tmp_path / "cbct")
    assert code == 0 and len(warnings) == 1, warnings   # the CT case is fine
    assert "case t1 is one grey level: its input spans 0..0.8" in warnings[0] and "HU" in warnings[0]


def test_a_volume_in_hu_makes_a_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medgen_cli.data.cbct import read_case

    save_nifti(_head(unit=False), tmp_path / "vols" / "ct.nii.gz", affine=np.diag([8.0, 8.0, 8.0, 1.0]))
    code, warnings = _make_cbct(capsys, tmp_path / "vols", tmp_path / "cbct")
    assert code == 0 and warnings == []
    case = read_case(tmp_path / "cbct" / "train" / "ct.h5")
    assert case.volume.max() > 0.4 and case.projections.max() > 0


def test_an_all_air_volume_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medgen_cli.data.cbct import read_case

    save_nifti(np.full((24, 24, 24), -1000.0, np.float32), tmp_path / "vols" / "air.nii.gz",
               affine=np.diag([8.0, 8.0, 8.0, 1.0]))
    code, warnings = _make_cbct(capsys, tmp_path / "vols", tmp_path / "cbct")
    assert code == 0 and len(warnings) == 1
    assert "case air is constant inside the field of view (every voxel 0;" in warnings[0], warnings
    assert read_case(tmp_path / "cbct" / "train" / "air.h5").projections.max() == 0   # what it warned about
