"""Volume → points and point-file IO."""

from __future__ import annotations

import numpy as np
import pytest

from medgen_cli.data.points import load_points, save_points, volume_to_points
from medgen_cli.errors import MedgenError


def test_volume_to_points_applies_affine_to_voxel_centres():
    vol = np.zeros((4, 5, 6), np.float32)
    vol[1, 2, 3] = 1.0
    vol[3, 0, 5] = 0.6
    vol[0, 0, 0] = 0.5  # equal to the threshold: dropped (strictly greater is kept)
    aff = np.array([[2.0, 0, 0, 10], [0, 0.5, 0, -1], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    pts, vals = volume_to_points(vol, aff, 0.5, return_values=True)
    expected = np.array([[2 * 1 + 10, 0.5 * 2 - 1, 3 * 3 + 7], [2 * 3 + 10, -1, 3 * 5 + 7]], float)
    np.testing.assert_allclose(pts, expected)
    np.testing.assert_allclose(vals, [1.0, 0.6])


def test_volume_to_points_2d_and_identity():
    img = np.zeros((3, 3), np.float32)
    img[2, 1] = 1
    np.testing.assert_allclose(volume_to_points(img, None, 0.0), [[2, 1, 0]])


@pytest.mark.parametrize("suffix", [".npy", ".h5", ".ply"])
def test_save_load_round_trip_and_overwrite(tmp_path, suffix):
    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    path = tmp_path / f"p{suffix}"
    save_points(pts, path, values=np.arange(50, dtype=np.float32))
    np.testing.assert_array_equal(load_points(path), pts)
    with pytest.raises(MedgenError, match="already exists"):
        save_points(pts, path)
    save_points(pts[:5], path, overwrite=True)
    assert load_points(path).shape == (5, 3)
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_save_points_rejects_bad_input(tmp_path):
    with pytest.raises(MedgenError, match="unknown point-file"):
        save_points(np.zeros((2, 3)), tmp_path / "x.txt")
    with pytest.raises(MedgenError, match=r"\[P, 3\]"):
        save_points(np.zeros((2, 4)), tmp_path / "x.npy")
