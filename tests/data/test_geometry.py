"""The geometry module against diffct's own projector: bright voxels land where points project."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medgen_cli.data.cbct.geometry import CBCTGeometry, load_geometry
from medgen_cli.errors import MedgenError

REPO = Path(__file__).resolve().parents[2]
VOXELS = [(8, 8, 8), (3, 12, 13), (12, 2, 5), (6, 12, 3)]  # (z, y, x) indices of a 16³ grid


def _diffct_projection(geo: CBCTGeometry, vol: torch.Tensor, angles: np.ndarray) -> torch.Tensor:
    """diffct called directly (not through the geometry module): the independent reference."""
    from diffct import Projector, circular_trajectory_3d

    traj = circular_trajectory_3d(torch.tensor(angles, dtype=torch.float32), sid=geo.dso, sdd=geo.dsd, device="cpu")
    n, d = geo.volume_size, geo.detector_size
    proj = Projector(traj, (n, n, n), (d, d), detector_spacing=geo.detector_spacing,
                     voxel_spacing=geo.voxel_spacing, backend="torch")
    return proj.project(vol)


@pytest.mark.parametrize("voxel", VOXELS)
def test_bright_voxel_peak_matches_point_projection(voxel: tuple[int, int, int]) -> None:
    # A detector 4x finer than the voxels' footprint makes the centroid a sub-pixel measurement.
    geo = CBCTGeometry().scaled(16, detector_size=64)
    angles = np.deg2rad([0.0, 33.0, 90.0, 137.0, 200.0, 301.0])
    vol = torch.zeros(16, 16, 16)
    vol[voxel] = 1.0
    proj = _diffct_projection(geo, vol, angles)
    iu_grid = torch.arange(64, dtype=torch.float64)
    for k, angle in enumerate(angles):
        img = proj[k].double()
        w = img / img.sum()
        cu, cv = float((w.sum(1) * iu_grid).sum()), float((w.sum(0) * iu_grid).sum())
        pu, pv = geo.point_to_pixel(geo.voxel_center_mm(*voxel), angle)
        assert abs(cu - pu) < 0.35 and abs(cv - pv) < 0.35, (voxel, math.degrees(angle), (cu, cv), (pu, pv))
    # On the native detector (one pixel per voxel footprint) the brightest pixel is the one hit.
    geo = CBCTGeometry().scaled(16)
    proj = _diffct_projection(geo, vol, angles)
    for k, angle in enumerate(angles):
        au, av = np.unravel_index(int(proj[k].argmax()), proj[k].shape)
        pu, pv = geo.point_to_pixel(geo.voxel_center_mm(*voxel), angle)
        assert abs(au - pu) <= 1.0 and abs(av - pv) <= 1.0, (voxel, math.degrees(angle), (au, av), (pu, pv))


def test_normalized_projection_samples_the_peak() -> None:
    """``project_points_normalized`` + grid_sample(align_corners=False) reads the bright pixel."""
    geo = CBCTGeometry().scaled(16)
    angles = np.deg2rad([10.0, 75.0, 160.0])
    for voxel in VOXELS:
        vol = torch.zeros(16, 16, 16)
        vol[voxel] = 1.0
        proj = _diffct_projection(geo, vol, angles)                       # (V, U, W)
        x, y, z = geo.voxel_center_mm(*voxel)
        p = torch.tensor([[x, y, z]], dtype=torch.float32) / (geo.extent / 2)
        grid = geo.project_points_normalized(p, torch.tensor(angles, dtype=torch.float32))  # (V, 1, 2)
        sampled = F.grid_sample(proj[:, None], grid[:, :, None, :], align_corners=False).reshape(-1)
        peaks = proj.reshape(len(angles), -1).amax(1)
        assert torch.all(sampled > 0.3 * peaks), (voxel, sampled, peaks)


def test_project_points_matches_single_point_formula() -> None:
    geo = CBCTGeometry().scaled(32)
    pts = torch.tensor([[10.0, -40.0, 25.0], [-100.0, 60.0, -80.0]], dtype=torch.float64)
    angles = torch.tensor([0.3, 2.0], dtype=torch.float64)
    u, v, depth = geo.project_points_mm(pts, angles)
    for k in range(2):
        for i in range(2):
            iu, iv = geo.point_to_pixel(pts[i].tolist(), float(angles[k]))
            assert iu == pytest.approx(float(u[k, i]) / geo.detector_spacing + 15.5)
            assert iv == pytest.approx(float(v[k, i]) / geo.detector_spacing + 15.5)
    # Depth: distance from the source along the central ray (source at (-dso sinθ, dso cosθ, 0)).
    th = float(angles[0])
    src = np.array([-geo.dso * math.sin(th), geo.dso * math.cos(th), 0.0])
    axis = np.array([math.sin(th), -math.cos(th), 0.0])
    assert float(depth[0, 0]) == pytest.approx(float((pts[0].numpy() - src) @ axis))


def test_scaled_keeps_the_field_of_view_and_the_yaml_matches() -> None:
    base = CBCTGeometry()
    small = base.scaled(32)
    assert small.extent == pytest.approx(base.extent) and small.detector_extent == pytest.approx(base.detector_extent)
    assert load_geometry(str(REPO / "configs" / "cbct_geometry.yaml")) == base.scaled(64)
    assert np.allclose(base.angles()[:2], [0.0, math.pi / 50])


def test_field_of_view_and_bad_geometries() -> None:
    geo = CBCTGeometry().scaled(16)
    with pytest.raises(MedgenError, match="field of view"):
        geo.check_field_of_view(np.ones((16, 16, 16), dtype=np.float32))  # the whole box is too big
    small = np.zeros((16, 16, 16), dtype=np.float32)
    small[4:12, 4:12, 4:12] = 1.0
    geo.check_field_of_view(small)
    with pytest.raises(MedgenError, match="dsd"):
        CBCTGeometry(dso=900, dsd=800).check()
    with pytest.raises(MedgenError, match="source orbit"):
        CBCTGeometry(dso=200).check()
    with pytest.raises(MedgenError, match="no CBCT geometry"):
        CBCTGeometry.from_attrs({"source": "x"})


def test_ray_sums_match_diffct_projections() -> None:
    """The nearest-voxel ray sums equal diffct's line integrals of a phantom within 2% (128 samples
    per ray; more samples converge), at the detector pixels they report, for every view."""
    from medgen_cli.data.cbct import phantom_hu, window

    geo = CBCTGeometry().scaled(32)
    vol = torch.from_numpy(window(phantom_hu(32, seed=3)))
    angles = np.deg2rad([0.0, 41.0, 97.0, 150.0, 233.0])
    proj = _diffct_projection(geo, vol, angles)
    points, step, pixels = geo.ray_samples(angles, stride=2, samples=128)
    assert points.shape == (5, 16 * 16, 128, 3) and pixels.tolist() == list(range(1, 32, 2))
    sums = geo.ray_sums(vol[None], points, step)[0]
    ref = proj[:, pixels][:, :, pixels].reshape(5, -1)
    rel = float((sums - ref).norm() / ref.norm())
    assert rel < 0.02, rel
    fine = geo.ray_sums(vol[None], *geo.ray_samples(angles, stride=2, samples=512)[:2])[0]
    assert float((fine - ref).norm() / ref.norm()) < 0.006
    # Trilinear sampling would be the wrong model of diffct (blurs the phantom's edges): a real check.
    assert float((geo.ray_sums(vol[None] * 1.05, points, step)[0] - ref).norm() / ref.norm()) > 0.03
