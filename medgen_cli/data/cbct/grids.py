"""Grids and coordinates of CBCT volumes: resampling a CT onto a geometry's grid, the grid's
affine, and the normalised ``[-1, 1]`` voxel-centre coordinates that models and reconstructors
are queried at (``x, y, z`` order, ``align_corners=False`` convention)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medgen_cli.data.cbct.geometry import CBCTGeometry
from medgen_cli.data.cbct.phantoms import HU_WINDOW, window
from medgen_cli.errors import MedgenError

if TYPE_CHECKING:
    import torch


def resample_to_grid(array_xyz: np.ndarray, affine: np.ndarray, geometry: CBCTGeometry,
                     hu_window: tuple[float, float] = HU_WINDOW,
                     pose: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Window a NIfTI CT array and resample/crop/pad it to the geometry's grid (centre-aligned).

    Args:
        array_xyz: HU values in NIfTI ``(x, y, z)`` voxel order.
        affine: its voxel-to-world matrix.
        geometry: target grid (``volume_size`` voxels of ``voxel_spacing`` mm).
        hu_window: HU mapped to 0 and 1.
        pose: optional 4×4 pose (mm about the volume centre, see :mod:`medgen_cli.data.cbct.poses`)
            applied in the same resampling.

    Returns:
        ``(volume_zyx in [0, 1], affine of the new grid in (x, y, z) order)``; the affine maps an
        output voxel to the source world point it was sampled from.
    """
    import torch
    import torch.nn.functional as F
    from scipy.ndimage import gaussian_filter

    arr = np.asarray(array_xyz)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise MedgenError(f"expected a 3D CT volume, got shape {tuple(arr.shape)}")
    n, st = geometry.volume_size, geometry.voxel_spacing
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    spacing = np.where(spacing > 0, spacing, 1.0)
    pose = np.eye(4) if pose is None else np.asarray(pose, dtype=np.float64)
    zoom = abs(np.linalg.det(pose[:3, :3])) ** (1 / 3)
    factor = st / spacing / zoom                        # input voxels per target voxel, per axis
    win = window(arr, *hu_window)
    sigma = np.where(factor > 1, (factor - 1) * 0.5, 0.0)  # anti-alias before down-sampling
    if np.any(sigma > 0):
        win = gaussian_filter(win, sigma=sigma, mode="nearest")
    # Output index j ↦ p = (j - c_out)·st mm ↦ source mm A⁻¹(p - t) ↦ input index c_in + that / spacing.
    centre = (np.asarray(arr.shape) - 1) / 2.0
    inv = np.linalg.inv(pose[:3, :3])
    t = np.eye(4)
    t[:3, :3] = np.diag(1 / spacing) @ inv * st
    t[:3, 3] = centre - np.diag(1 / spacing) @ inv @ (np.full(3, (n - 1) / 2.0 * st) + pose[:3, 3])
    # grid_sample wants normalised coordinates (align_corners=True) in reversed axis order.
    to_norm_in = np.diag([*(2 / np.maximum(np.asarray(arr.shape) - 1, 1)), 1.0])
    to_norm_in[:3, 3] = -1
    from_norm_out = np.diag([(n - 1) / 2.0] * 3 + [1.0])
    from_norm_out[:3, 3] = (n - 1) / 2.0
    theta = (to_norm_in @ t @ from_norm_out)[:3]
    theta = np.concatenate([theta[::-1, :3], theta[::-1, 3:]], axis=1)  # rows: input (z, y, x)
    grid = F.affine_grid(torch.as_tensor(theta, dtype=torch.float32)[None], [1, 1, n, n, n], align_corners=True)
    inp = torch.as_tensor(np.ascontiguousarray(win), dtype=torch.float32)[None, None]  # (1,1,X,Y,Z)
    out = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0, 0]
    return out.numpy().astype(np.float32), np.asarray(affine, dtype=np.float64) @ t


def grid_affine(geometry: CBCTGeometry) -> np.ndarray:
    """Affine of a synthetic grid: spacing on the diagonal, world origin at the volume centre."""
    n, s = geometry.volume_size, geometry.voxel_spacing
    aff = np.diag([s, s, s, 1.0])
    aff[:3, 3] = -(n - 1) / 2.0 * s
    return aff


def normalized_grid(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Voxel centres of an ``n³`` grid as ``(n³, 3)`` (x, y, z) points, in ``(z, y, x)`` raster order."""
    import torch

    c = (torch.arange(n, dtype=torch.float32, device=device) + 0.5) / n * 2 - 1
    gz, gy, gx = torch.meshgrid(c, c, c, indexing="ij")
    return torch.stack((gx, gy, gz), -1).reshape(-1, 3)


def input_points(shape: tuple[int, ...], affine: np.ndarray, geometry: CBCTGeometry) -> np.ndarray:
    """Normalised grid coordinates ``(P, 3)`` of the voxels of an input volume of ``shape`` (NIfTI
    ``(x, y, z)`` raster order) after :func:`resample_to_grid` centred it on the geometry's grid."""
    # Input voxel i ↦ grid index (n-1)/2 + (i - c_in) / factor ↦ normalised (2j + 1) / n - 1.
    n = geometry.volume_size
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    factor = geometry.voxel_spacing / np.where(spacing > 0, spacing, 1.0)
    axes = [((n - 1) / 2 + (np.arange(s) - (s - 1) / 2) / factor[a]) * 2 / n + 1 / n - 1
            for a, s in enumerate(shape)]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij")                   # NIfTI (x, y, z) raster order
    return np.stack((gx, gy, gz), -1).reshape(-1, 3).astype(np.float32)


def values_at_points(volume_zyx: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear values of a ``(z, y, x)`` volume at normalised ``(P, 3)`` points, clipped to [0, 1]
    (zero outside the grid)."""
    import torch

    grid = torch.as_tensor(points, dtype=torch.float32).reshape(1, -1, 1, 1, 3)
    vol = torch.as_tensor(np.ascontiguousarray(volume_zyx), dtype=torch.float32)[None, None]
    out = torch.nn.functional.grid_sample(vol, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return np.clip(out.reshape(-1).numpy(), 0.0, 1.0)
