"""Voxelization against independent references (np.histogramdd, brute-force Gaussians)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medgen_cli.data.points import volume_to_points
from medgen_cli.data.voxelize import (DegenerateBounds, fit_grid, identity_grid, parse_bounds, parse_triple,
                                      voxelize, voxelize_batch)
from medgen_cli.errors import MedgenError

RES = (16, 12, 8)


def _cloud(seed=0, n=300):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) * [10.0, 4.0, 2.0] + [5.0, -3.0, 100.0]


def _hist(u, res, weights=None):
    h, _ = np.histogramdd(u, bins=res, range=[(0, r) for r in res], weights=weights)
    return h


def test_fit_grid_keeps_aspect_centres_and_leaves_margin():
    pts = _cloud()
    lo, hi = pts.min(0), pts.max(0)
    g = fit_grid(lo, hi, RES, margin=0.1)
    assert np.allclose(g.voxel_size, g.voxel_size[0])  # isotropic: aspect ratio kept
    u = g.to_grid(pts)
    np.testing.assert_allclose(g.to_grid(((lo + hi) / 2)[None])[0], np.array(RES) / 2)  # centred
    # The tightest axis spans exactly (1 - 2 margin) of its grid size, the others less.
    span = (u.max(0) - u.min(0)) / np.array(RES)
    assert math.isclose(span.max(), 0.8, rel_tol=1e-9) and np.all(span <= 0.8 + 1e-9)
    assert np.all(u.min(0) >= 0.1 * np.array(RES) - 1e-9)


def test_occupancy_and_density_equal_histogramdd():
    pts = _cloud()
    g = fit_grid(pts.min(0), pts.max(0), RES, margin=0.0)
    u = (pts - g.origin) / g.voxel_size  # independent normalisation from the documented definition
    h = _hist(u, RES)
    np.testing.assert_array_equal(voxelize(pts, g, "occupancy"), (h > 0).astype(np.float32))
    np.testing.assert_allclose(voxelize(pts, g, "density"), h / h.max(), rtol=1e-6)
    w = np.random.default_rng(1).random(len(pts))
    hw = _hist(u, RES, weights=w)
    np.testing.assert_allclose(voxelize(pts, g, "density", weights=w), hw / hw.max(), rtol=1e-5)
    # Occupancy ignores weights (documented).
    np.testing.assert_array_equal(voxelize(pts, g, "occupancy", weights=w), (h > 0).astype(np.float32))


def test_gaussian_matches_brute_force_definition():
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 10, size=(25, 3))
    g = identity_grid((10, 10, 10))
    sigma = 0.8
    r = math.ceil(3 * sigma)
    centres = np.stack(np.meshgrid(*[np.arange(10) + 0.5] * 3, indexing="ij"), -1)  # [10,10,10,3]
    ref = np.zeros((10, 10, 10))
    ref_untruncated = np.zeros((10, 10, 10))
    vox = np.minimum(np.floor(pts).astype(int), 9)
    for p, v in zip(pts, vox):
        k = np.exp(-((centres - p) ** 2).sum(-1) / (2 * sigma**2))
        ref_untruncated += k
        window = np.all(np.abs(np.indices((10, 10, 10)).transpose(1, 2, 3, 0) - v) <= r, axis=-1)
        ref += k * window
    out = voxelize(pts, g, "gaussian", sigma=sigma)
    np.testing.assert_allclose(out, ref / ref.max(), atol=1e-6)
    assert float(out.max()) == pytest.approx(1.0)
    # Truncation at ceil(3 sigma) voxels changes values by at most exp(-3.5^2 / 2) of a peak.
    np.testing.assert_allclose(out, ref_untruncated / ref_untruncated.max(), atol=3e-3)


def test_gaussian_single_point_unit_peak_profile():
    g = identity_grid((9, 9, 9))
    out = voxelize(np.array([[4.5, 4.5, 4.5]]), g, "gaussian", sigma=1.5)
    assert out[4, 4, 4] == pytest.approx(1.0)
    assert out[5, 4, 4] == pytest.approx(math.exp(-1 / (2 * 1.5**2)), rel=1e-5)
    assert out[6, 5, 4] == pytest.approx(math.exp(-(4 + 1) / (2 * 1.5**2)), rel=1e-5)


def test_batch_equals_single_and_counts_outside():
    clouds = [_cloud(s, 100 + 10 * s) for s in range(4)]
    grids = [fit_grid(c.min(0), c.max(0), RES) for c in clouds]
    vols, outside = voxelize_batch(clouds, grids, "density")
    for c, gr, v in zip(clouds, grids, vols):
        np.testing.assert_array_equal(v, voxelize(c, gr, "density"))
    assert outside.tolist() == [0, 0, 0, 0]
    g = identity_grid((4, 4, 4))
    pts = np.array([[0.5, 0.5, 0.5], [4.0, 4.0, 4.0], [4.01, 1, 1], [-0.1, 1, 1]])
    vol, out = voxelize_batch([pts], [g], "occupancy")
    assert out.tolist() == [2]  # far face kept (as histogramdd), beyond it dropped
    assert vol[0, 0, 0, 0] == 1 and vol[0, 3, 3, 3] == 1 and vol.sum() == 2


def test_affine_round_trip_within_half_a_voxel():
    pts = _cloud(3, 500)
    g = fit_grid(pts.min(0), pts.max(0), RES, margin=0.05)
    vol = voxelize(pts, g, "occupancy")
    back = volume_to_points(vol, g.affine(), 0.0)
    # Every point's nearest recovered voxel centre is within half a voxel on every axis...
    d = np.abs(pts[:, None, :] - back[None, :, :]).max(-1).min(1)
    assert np.all(d <= g.voxel_size[0] / 2 + 1e-9)
    # ...and every recovered centre is within half a voxel of some point.
    assert np.all(np.abs(back[:, None, :] - pts[None]).max(-1).min(1) <= g.voxel_size[0] / 2 + 1e-9)


def test_spacing_and_bounds_and_parsing():
    g = fit_grid(np.zeros(3), np.array([10.0, 10, 10]), (8, 8, 8), spacing=(2.0, 2.0, 2.0))
    np.testing.assert_allclose(g.voxel_size, 2.0)
    np.testing.assert_allclose(g.origin, [-3, -3, -3])  # box centre 5 at the grid centre (4 voxels of 2)
    with pytest.raises(DegenerateBounds):
        fit_grid(np.ones(3), np.ones(3), (8, 8, 8))
    assert parse_triple("32", "--resolution", integer=True) == (32, 32, 32)
    assert parse_triple("4,5,6", "--resolution", integer=True) == (4, 5, 6)
    for bad in ("0", "4,5", "a"):
        with pytest.raises(MedgenError):
            parse_triple(bad, "--resolution", integer=True)
    lo, hi = parse_bounds("0,0,0,1,2,3")
    assert hi.tolist() == [1, 2, 3]
    for bad in ("0,0,0,1,2", "1,1,1,0,0,0", "0,0,0,0,0,0"):
        with pytest.raises(MedgenError):
            parse_bounds(bad)
    with pytest.raises(MedgenError, match="method"):
        voxelize(np.zeros((1, 3)), g, "splat")
