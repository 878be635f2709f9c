"""2.5D FID says when its number means little (issue 29, items 7 and 9): [0, 1] volumes in a HU
--window warn (FID 0.027 vs 326 in the issue); a volume with NaN is refused, one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medgen_cli.cli.app import main


def _volumes(folder: Path, n: int, seed: int, nan_voxels: int = 0) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        v = rng.random((8, 8, 8)).astype(np.float32)     # data in [0, 1], as a model's samples
        v.reshape(-1)[:nan_voxels] = np.nan
        nib.save(nib.Nifti1Image(v, np.eye(4)), str(folder / f"vol_{i}.nii.gz"))
    return folder


def _fid(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "fid", *[str(a) for a in args], "--device", "cpu", "--dims", "64", "--json"])
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out, cap.err


def test_unit_data_in_a_hu_window_warns(fid_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real, fake = _volumes(tmp_path / "real", 2, 0), _volumes(tmp_path / "fake", 2, 1)
    code, out, err = _fid(capsys, real, fake, "--window=-1000,1024")
    assert code == 0, err
    json.loads(out)
    warned = [line for line in err.splitlines() if "--window=-1000,1024" in line]
    assert len(warned) == 2 and str(real) in warned[0] and str(fake) in warned[1], err
    assert "0.049% of" in warned[0] and "HU" in warned[0]
    # The cached REAL statistics still warn; a window that fits the data does not.
    code, _, err = _fid(capsys, real, fake, "--window=-1000,1024")
    assert code == 0 and sum("--window=-1000,1024" in line for line in err.splitlines()) == 2, err
    code, _, err = _fid(capsys, real, fake, "--window=0,1")
    assert code == 0 and "--window" not in err, err


def test_a_volume_with_nan_is_refused(fid_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real, fake = _volumes(tmp_path / "real", 2, 0), _volumes(tmp_path / "fake", 2, 1, nan_voxels=27)
    code, out, err = _fid(capsys, real, fake)
    assert code == 2 and out == "", out
    assert "vol_0.nii.gz has 27 non-finite voxel(s)" in err and len(err.strip().splitlines()) == 1, err
