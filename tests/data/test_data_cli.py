"""`medgen data ...` end to end through the console entry point (in-process)."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from medgen_cli.cli.app import main
from medgen_cli.data.points import load_points


def medgen(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return exc.value.code or 0, cap.out, cap.err


def test_synth_inspect_convert_to_points_round_trip(tmp_path, capsys):
    h5 = tmp_path / "demo.h5"
    code, out, _ = medgen(["data", "synth-h5", "--out", h5, "--n", 6, "--points", 300], capsys)
    assert code == 0 and h5.is_file()
    code, out, _ = medgen(["data", "inspect", h5, "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["layout"] == "fixed" and info["points_max"] == 300
    assert {r["path"] for r in info["tree"]} == {"data", "label"} and "6 cloud(s)" in info["plan"]
    code, out, _ = medgen(["data", "inspect", h5], capsys)
    assert code == 0 and "convert-h5 would read" in out
    dst = tmp_path / "vols"
    code, out, err = medgen(["data", "convert-h5", h5, "--out", dst, "--resolution", "16", "--val-fraction", "0.5",
                             "--workers", "2"], capsys)
    assert code == 0, err
    assert "volumes/s" in out and len(list((dst / "train").glob("*.nii.gz"))) == 3
    rec = json.loads((dst / "manifest.json").read_text())[0]
    # Points -> voxels -> points returns to the original frame within half a voxel.
    pts = h5py.File(h5, "r")["data"][rec["index"]]
    code, out, err = medgen(["data", "to-points", dst / rec["file"], "--threshold", "0.5", "--out", tmp_path / "p.ply"], capsys)
    assert code == 0, err
    back = load_points(tmp_path / "p.ply").astype(np.float64)
    half = rec["normalization"]["voxel_size"][0] / 2
    assert np.abs(pts[:, None, :] - back[None]).max(-1).min(1).max() <= half + 1e-4
    assert len(back) == int(np.asarray(nib.load(str(dst / rec["file"])).dataobj).sum())
    # Existing output file: refused without --overwrite.
    code, _, err = medgen(["data", "to-points", dst / rec["file"], "--out", tmp_path / "p.ply"], capsys)
    assert code == 2 and "already exists" in err


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "x.h5"
    bad.write_text("nope")
    code, _, err = medgen(["data", "convert-h5", bad, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "not an HDF5 file" in err and "Traceback" not in err
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f["pc_a"] = np.zeros((2, 4, 3))
        f["extra"] = np.zeros((2, 4, 3))
    code, _, err = medgen(["data", "convert-h5", tmp_path / "k.h5", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "choose one with --key" in err
    code, _, err = medgen(["data", "convert-h5", tmp_path / "k.h5", "--out", tmp_path / "o", "--key", "zz"], capsys)
    assert code == 2 and "key 'zz' not found" in err and "pc_a" in err and "extra" in err
    code, _, err = medgen(["data", "convert-h5", tmp_path / "k.h5", "--out", tmp_path / "o", "--key", "pc_a",
                           "--method", "splat"], capsys)
    assert code == 2 and "unknown --method" in err
    code, _, err = medgen(["data", "to-points", tmp_path / "broken.nii.gz", "--out", tmp_path / "p.npy"], capsys)
    assert code == 2 and "not found" in err
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    code, _, err = medgen(["data", "to-points", tmp_path / "broken.nii.gz", "--out", tmp_path / "p.npy"], capsys)
    assert code == 2 and "cannot read NIfTI" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "p.npy").exists()


def test_inspect_groups_layout_and_unreadable_plan(tmp_path, capsys):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        for i in range(3):
            f[f"case{i}/points"] = np.random.default_rng(i).normal(size=(10 + i, 4))
    code, out, _ = medgen(["data", "inspect", tmp_path / "g.h5", "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["layout"] == "groups" and (info["points_min"], info["points_max"]) == (10, 12)
    assert "1 per-point value column" in info["plan"]
    with h5py.File(tmp_path / "u.h5", "w") as f:
        f["x"] = np.zeros(5)
    code, out, _ = medgen(["data", "inspect", tmp_path / "u.h5", "--json"], capsys)
    assert code == 0 and json.loads(out)["layout"] is None and "cannot read" in json.loads(out)["plan"]
    (tmp_path / "t.h5").write_text("text")
    code, _, err = medgen(["data", "inspect", tmp_path / "t.h5"], capsys)
    assert code == 2 and "not an HDF5 file" in err
