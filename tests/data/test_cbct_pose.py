"""make-cbct augmentation (posed copies), --overwrite leaving exactly the new cases, zero fractions."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medgen_cli.cli.app import app
from medgen_cli.data import cbct
from medgen_cli.data.cbct.poses import PoseSpec, draw_pose
from medgen_cli.data.cbct.geometry import CBCTGeometry
from medgen_cli.errors import MedgenError

runner = CliRunner()


def _blob_folder(root: Path, names: list[str], n: int = 12) -> Path:
    """Asymmetric HU objects (x, y, z order) at the 8³ geometry's spacing, centred."""
    geo = CBCTGeometry().scaled(n)
    root.mkdir(parents=True, exist_ok=True)
    aff = np.diag([geo.voxel_spacing] * 3 + [1.0])
    for i, name in enumerate(names):
        hu = np.full((n, n, n), -1000.0, np.float32)
        hu[3:7, 4:6, 4:8] = 40.0 + 100 * i
        hu[3, 4, 4] = 1000.0  # one bright corner makes flips visible
        nib.save(nib.Nifti1Image(hu, aff), str(root / f"{name}.nii.gz"))
    return root


def test_pose_resampling_flips_rotates_and_keeps_world_positions() -> None:
    geo = CBCTGeometry().scaled(12)
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1000, 1000, (12, 12, 12)).astype(np.float32)  # (x, y, z)
    aff = np.diag([geo.voxel_spacing] * 3 + [1.0])
    plain, _ = cbct.resample_to_grid(hu, aff, geo)
    np.testing.assert_allclose(plain, cbct.window(hu).transpose(2, 1, 0), atol=1e-5)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped, aff_f = cbct.resample_to_grid(hu, aff, geo, pose=flip)
    np.testing.assert_allclose(flipped, plain[:, :, ::-1], atol=1e-5)          # x is the last (z, y, x) axis
    rot = np.eye(4)
    rot[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]                              # 90° about z
    rotated, aff_r = cbct.resample_to_grid(hu, aff, geo, pose=rot)
    # out(x, y) = src(R⁻¹(x, y)) = src(y, -x): on (z, y, x) arrays out[:, y, x] = plain[:, -x, y]
    np.testing.assert_allclose(rotated, np.rot90(plain, -1, axes=(1, 2)), atol=1e-5)
    # Each affine maps an output voxel to the source world point it was sampled from.
    src_world = aff @ np.array([11.0, 2.0, 5.0, 1.0])
    assert np.allclose(aff_f @ np.array([0.0, 2.0, 5.0, 1.0]), src_world)
    j = np.linalg.solve(aff_r, src_world)
    assert np.allclose(j, np.round(j)) and np.isclose(rotated[5, int(round(j[1])), int(round(j[0]))],
                                                      plain[5, 2, 11], atol=1e-5)


def test_draw_pose_is_seeded_and_bounded() -> None:
    spec = PoseSpec(copies=3, rotation=10, scale=(0.8, 1.2), shift=0.1, flip="xy")
    a, b = draw_pose(spec, "ct1", 0, 7, 100.0), draw_pose(spec, "ct1", 0, 7, 100.0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, draw_pose(spec, "ct1", 1, 7, 100.0))
    assert not np.array_equal(a, draw_pose(spec, "ct2", 0, 7, 100.0))
    for k in range(20):
        p = draw_pose(spec, "ct1", k, 7, 100.0)
        s = abs(np.linalg.det(p[:3, :3])) ** (1 / 3)
        assert 0.8 <= s <= 1.2 and np.all(np.abs(p[:3, 3]) <= 10.0)
    with pytest.raises(MedgenError):
        PoseSpec(copies=1, scale=(1.2, 0.8)).check()


def test_make_cbct_poses_share_the_split_of_their_volume(tmp_path: Path) -> None:
    src = _blob_folder(tmp_path / "in", [f"ct{i}" for i in range(4)])
    out = tmp_path / "d"
    r = runner.invoke(app, ["data", "make-cbct", str(src), "--size", "12", "--out", str(out), "--poses", "3",
                            "--val-fraction", "0.25", "--test-fraction", "0.25", "--seed", "1"])
    assert r.exit_code == 0, r.output
    files = sorted(out.glob("*/*.h5"))
    assert len(files) == 12
    by_source: dict[str, set[str]] = {}
    for f in files:
        by_source.setdefault(f.stem.rsplit("_pose", 1)[0], set()).add(f.parent.name)
    assert all(len(s) == 1 for s in by_source.values())                 # no pose leaks across splits
    vols = [cbct.read_case(f).volume for f in files if f.stem.startswith("ct0_")]
    assert not np.allclose(vols[0], vols[1])                              # the poses differ
    again = runner.invoke(app, ["data", "make-cbct", str(src), "--size", "12", "--out", str(out), "--poses", "3",
                                "--val-fraction", "0.25", "--test-fraction", "0.25", "--seed", "1"])
    assert again.exit_code == 0 and "0 written, 12 kept" in again.output.replace("\n", " ")
    other = runner.invoke(app, ["data", "make-cbct", str(src), "--size", "12", "--out", str(out), "--poses", "2",
                                "--val-fraction", "0.25", "--test-fraction", "0.25", "--seed", "1"])
    assert isinstance(other.exception, MedgenError) and "other settings" in str(other.exception)


def test_overwrite_after_a_failed_run_leaves_exactly_the_new_cases(tmp_path: Path) -> None:
    geo8, geo12 = CBCTGeometry().scaled(8), CBCTGeometry().scaled(12)
    out = tmp_path / "d"
    cbct.make_cbct(cbct.synthetic_sources(6, geo8), out, geo8, (0.5, 0.25, 0.25), seed=0, is_hu_grid=True)
    # A rebuild with another split seed and geometry that fails after two cases.
    sources = cbct.synthetic_sources(6, geo12)
    calls = {"n": 0}

    def failing(load):  # noqa: ANN001, ANN202
        def wrapped():  # noqa: ANN202
            calls["n"] += 1
            if calls["n"] > 2:
                raise RuntimeError("disk pulled")
            return load()
        return wrapped

    with pytest.raises(RuntimeError):
        cbct.make_cbct([(n, failing(ld)) for n, ld in sources], out, geo12, (0.5, 0.25, 0.25), seed=5,
                       overwrite=True, is_hu_grid=True)
    summary = cbct.make_cbct(sources, out, geo12, (0.5, 0.25, 0.25), seed=5, is_hu_grid=True)  # resume
    assert summary["written"] == 4 and summary["skipped"] == 2
    files = sorted(out.glob("*/*.h5"))
    assert {(f.parent.name, f.stem) for f in files} == {(s, c) for c, s in summary["split"].items()}
    assert all(cbct.read_case(f).geometry == geo12 for f in files)
    # An old-settings file planted where a new case belongs is rebuilt on resume, not kept.
    victim = files[0]
    cbct.write_case(victim, np.zeros((8,) * 3, np.float32), np.zeros((50, 8, 8), np.float32), geo8.angles(),
                    geo8, np.eye(4))
    again = cbct.make_cbct(sources, out, geo12, (0.5, 0.25, 0.25), seed=5, is_hu_grid=True)
    assert again["written"] == 1 and cbct.read_case(victim).geometry == geo12
    with h5py.File(victim, "r") as f:
        assert f.attrs["settings"]


def test_zero_test_fraction_puts_no_case_in_test(tmp_path: Path) -> None:
    r = runner.invoke(app, ["data", "make-cbct", "--synthetic", "5", "--size", "8", "--out", str(tmp_path / "d"),
                            "--test-fraction", "0.0", "--val-fraction", "0.2"])
    assert r.exit_code == 0, r.output
    assert not list((tmp_path / "d").glob("test/*.h5"))
    assert len(list((tmp_path / "d").glob("val/*.h5"))) == 1
    split = cbct.assign_splits([f"c{i}" for i in range(5)], (0.8, 0.0, 0.2), 0)
    assert "test" in split.values() and "val" not in split.values()
