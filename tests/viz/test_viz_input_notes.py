"""`medgen viz slices` says what it did not show (issue 29, item 9): volumes with NaN/inf voxels
(one warning line per file with the count), and inputs beyond --max ("6 left out")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medgen_cli.cli.app import main
from medgen_cli.io import save_nifti


def medgen(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out, cap.err


def test_a_volume_with_nan_is_named_with_its_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = np.zeros((8, 8, 8), np.float32)
    bad[1:4, 1:4, 1:4] = np.nan      # 27 voxels, as in the issue
    save_nifti(bad, tmp_path / "bad.nii.gz")
    save_nifti(np.ones((8, 8, 8), np.float32), tmp_path / "good.nii.gz")
    code, out, err = medgen(["viz", "slices", tmp_path / "bad.nii.gz", tmp_path / "good.nii.gz",
                             "--out", tmp_path / "g.png", "--json"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "bad.nii.gz" in warnings[0] and "27 non-finite" in warnings[0], err
    assert json.loads(out)["volumes"][0]["nonfinite"] == 27     # --json unchanged, and still one document


def test_images_beyond_max_are_said_to_be_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(70):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(folder / f"{i:03d}.png")
    code, out, err = medgen(["viz", "slices", folder, "--out", tmp_path / "g.png"], capsys)
    assert code == 0, err
    assert "grid of 64 image(s)" in out
    assert "64 of 70 images" in err and "6 left out" in err, err
    code, out, err = medgen(["viz", "slices", folder, "--out", tmp_path / "h.png", "--max", "70"], capsys)
    assert code == 0 and "grid of 70 image(s)" in out and "left out" not in err


def test_volumes_beyond_max_are_said_to_be_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        save_nifti(np.full((4, 4, 4), i, np.float32), tmp_path / "v" / f"{i}.nii.gz")
    code, out, err = medgen(["viz", "slices", tmp_path / "v", "--out", tmp_path / "g.png", "--max", "2", "--json"], capsys)
    assert code == 0 and len(json.loads(out)["volumes"]) == 2
    assert "2 of 3 volumes" in err and "1 left out" in err, err
