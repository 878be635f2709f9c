"""`medgen viz slices` end to end: volumes (NIfTI, .npy, folders), image folders, --json, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medgen_cli.cli.app import main
from medgen_cli.io import save_nifti


def medgen(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return exc.value.code or 0, cap.out, cap.err


def test_slices_of_nifti_and_npy_with_json_stats(tmp_path, capsys):
    vol = np.zeros((16, 16, 16), np.float32)
    vol[4:8, 4:12, 2:14] = 2.0
    save_nifti(vol, tmp_path / "a.nii.gz", affine=np.diag([0.5, 1.0, 2.0, 1.0]))
    np.save(tmp_path / "b.npy", np.random.default_rng(0).random((16, 12, 8)).astype(np.float32))
    png = tmp_path / "grid.png"
    code, out, err = medgen(["viz", "slices", tmp_path / "a.nii.gz", tmp_path / "b.npy", "--out", png,
                             "--n-slices", "2", "--mip", "--json"], capsys)
    assert code == 0, err
    stats = json.loads(out)["volumes"]
    assert stats[0]["shape"] == [16, 16, 16] and stats[0]["spacing"] == [0.5, 1.0, 2.0]
    assert stats[0]["max"] == 2.0 and stats[0]["min"] == 0.0
    assert stats[0]["occupancy"] == pytest.approx((4 * 8 * 12) / 16**3)
    assert stats[0]["mean"] == pytest.approx(2.0 * (4 * 8 * 12) / 16**3)
    assert stats[1]["shape"] == [16, 12, 8] and stats[1]["spacing"] == [1.0, 1.0, 1.0]
    with Image.open(png) as im:  # 3 planes x (2 slices + MIP) columns + colour bars, 2 rows of 200 px panels
        assert im.size == (int(9.5 * 200), 2 * 200)
    code, _, err = medgen(["viz", "slices", tmp_path / "a.nii.gz", "--out", png], capsys)
    assert code == 2 and "already exists" in err
    code, out, _ = medgen(["viz", "slices", tmp_path, "--out", tmp_path / "dir.png", "--axes", "axial"], capsys)
    assert code == 0 and "a.nii.gz" in out and "b.npy" in out
    with Image.open(tmp_path / "dir.png") as im:
        assert im.size == (int(1.5 * 200), 400)


def test_slices_of_an_image_folder(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(folder / f"{i}.png")
    code, out, err = medgen(["viz", "slices", folder, "--out", tmp_path / "g.png", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["grid"]["images"] == 5
    with Image.open(tmp_path / "g.png") as im:  # 3 columns x 2 rows of 16 px tiles, 2 px gaps
        assert im.size == (3 * 16 + 4, 2 * 16 + 2) and im.mode == "L"


def test_slices_errors(tmp_path, capsys):
    (tmp_path / "bad.nii.gz").write_bytes(b"garbage")
    code, _, err = medgen(["viz", "slices", tmp_path / "bad.nii.gz", "--out", tmp_path / "x.png"], capsys)
    assert code == 2 and "cannot read NIfTI" in err and "Traceback" not in err
    code, _, err = medgen(["viz", "slices", tmp_path / "missing.nii.gz", "--out", tmp_path / "x.png"], capsys)
    assert code == 2 and "not found" in err
    np.save(tmp_path / "v.npy", np.zeros((4, 4, 4)))
    code, _, err = medgen(["viz", "slices", tmp_path / "v.npy", "--out", tmp_path / "x.png", "--axes", "top"], capsys)
    assert code == 2 and "plane" in err
    assert not (tmp_path / "x.png").exists()
