"""Point clouds → voxel grids: the grid (normalization) and the three voxelization methods.

**Grid.** A grid of ``R = (Rx, Ry, Rz)`` voxels with corner ``origin`` and voxel size ``s`` (per
axis). A point ``p`` has grid coordinates ``u = (p - origin) / s`` and lies in voxel
``floor(u)``. Points with ``u`` outside ``[0, R]`` on any axis are dropped (and counted); a point
exactly on the far face (``u == R``) belongs to the last voxel, as in ``np.histogramdd``. The
NIfTI affine is ``A = [[diag(s), origin + s / 2], [0, 1]]``: it maps voxel indices to the centres
of the voxels in the points' own frame, so voxels → points returns to the original coordinates
within half a voxel.

Normalizations (how ``origin`` and ``s`` are chosen):

- ``sample``: each cloud's own bounding box, ``dataset``: the bounding box of all clouds, or
  explicit ``bounds``: the box is centred in the grid and scaled by one isotropic voxel size
  ``s = max_k(extent_k / (R_k * (1 - 2 * margin)))`` (aspect ratio kept, a ``margin`` fraction of
  the grid left empty on each side of the longest axis). With ``spacing`` given, ``s = spacing``
  instead (the box is still centred; points falling outside are dropped). A box of zero extent on
  every axis (all points identical) is degenerate: the cloud is skipped.
- ``none``: ``origin = 0`` and ``s = spacing`` (default 1): the points are already voxel
  coordinates in units of ``spacing``.

Methods (value of voxel ``v``; ``w_p`` is the point's weight: 1, or its per-point value):

- ``occupancy``: 1 if at least one point lies in ``v``, else 0 (weights are ignored).
- ``density``: ``D(v) = sum of w_p over the points in v``, divided by ``max_v D(v)`` so the densest
  voxel is exactly 1 and the volume is in [0, 1] (not normalised by the point count).
- ``gaussian``: each point adds an isotropic Gaussian of *unit peak* (not unit mass; its mass is
  ``(2 pi)^(3/2) sigma^3`` voxels), ``G(v) = sum_p w_p exp(-|c_v - u_p|^2 / (2 sigma^2))``,
  evaluated at voxel centres ``c_v = v + 0.5`` (grid units, ``sigma`` in voxels) for voxels within
  ``ceil(3 sigma)`` voxels of the point's own voxel along each axis (zero beyond), then divided
  by ``max_v G(v)`` so the volume peaks at exactly 1.

Everything is vectorised over points (``np.bincount`` on flat voxel indices), and
``voxelize_batch`` over clouds too: that, not the workers, is what makes conversion fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from medgen_cli.errors import MedgenError

METHODS = ("occupancy", "density", "gaussian")
NORMALIZATIONS = ("sample", "dataset", "none")


class DegenerateBounds(MedgenError):
    """The points span no volume (all identical): no grid can be fitted."""


@dataclass(frozen=True)
class Grid:
    """A voxel grid placed in the points' frame (see the module docstring)."""

    resolution: tuple[int, int, int]
    origin: np.ndarray
    voxel_size: np.ndarray

    def affine(self) -> np.ndarray:
        """4x4 NIfTI affine: voxel index → centre of that voxel in the points' frame."""
        a = np.eye(4)
        a[:3, :3] = np.diag(self.voxel_size)
        a[:3, 3] = self.origin + self.voxel_size / 2.0
        return a

    def to_grid(self, points: np.ndarray) -> np.ndarray:
        """Continuous grid coordinates ``u = (p - origin) / s`` of ``[P, 3]`` points."""
        return (np.asarray(points, dtype=np.float64)[:, :3] - self.origin) / self.voxel_size


def parse_triple(text: str | Sequence[float] | None, name: str, integer: bool = False) -> tuple | None:
    """``"64"`` → (64, 64, 64); ``"64,64,32"`` → (64, 64, 32); None stays None."""
    if text is None:
        return None
    parts = [t for t in str(text).replace(" ", "").split(",")] if isinstance(text, str) else list(text)
    try:
        vals = [int(p) if integer else float(p) for p in parts]
    except ValueError as exc:
        raise MedgenError(f"{name} must be one number or three comma-separated numbers, not {text!r}") from exc
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or any(v <= 0 for v in vals):
        raise MedgenError(f"{name} must be one or three positive numbers, not {text!r}")
    return tuple(vals)


def parse_bounds(text: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``"xmin,ymin,zmin,xmax,ymax,zmax"`` → (lo, hi)."""
    if text is None:
        return None
    try:
        v = [float(t) for t in text.split(",")]
    except ValueError as exc:
        raise MedgenError(f"--bounds must be six numbers xmin,ymin,zmin,xmax,ymax,zmax, not {text!r}") from exc
    if len(v) != 6 or not all(math.isfinite(x) for x in v):
        raise MedgenError(f"--bounds must be six numbers xmin,ymin,zmin,xmax,ymax,zmax, not {text!r}")
    lo, hi = np.array(v[:3]), np.array(v[3:])
    if np.any(hi < lo) or np.all(hi == lo):
        raise MedgenError(f"--bounds must have max >= min on every axis and a positive extent, not {text!r}")
    return lo, hi


def fit_grid(lo: np.ndarray, hi: np.ndarray, resolution: Sequence[int], margin: float = 0.05,
             spacing: Sequence[float] | None = None) -> Grid:
    """Centre the box ``[lo, hi]`` in the grid; isotropic fit with ``margin``, or fixed ``spacing``.

    Raises:
        DegenerateBounds: zero extent on every axis (and no ``spacing``).
    """
    res = np.asarray(resolution, dtype=np.float64)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if not 0.0 <= margin < 0.5:
        raise MedgenError(f"margin must be in [0, 0.5), not {margin}")
    if spacing is not None:
        size = np.asarray(spacing, dtype=np.float64)
    else:
        s = float(np.max((hi - lo) / (res * (1.0 - 2.0 * margin))))
        if not s > 0.0:
            raise DegenerateBounds("all points are identical (degenerate bounds)")
        size = np.full(3, s)
    origin = (lo + hi) / 2.0 - res * size / 2.0
    return Grid(tuple(int(r) for r in resolution), origin, size)


def identity_grid(resolution: Sequence[int], spacing: Sequence[float] | None = None) -> Grid:
    """``normalize none``: origin 0, voxel size ``spacing`` (default 1)."""
    size = np.ones(3) if spacing is None else np.asarray(spacing, dtype=np.float64)
    return Grid(tuple(int(r) for r in resolution), np.zeros(3), size)


def voxel_indices(u: np.ndarray, resolution: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Integer voxel indices ``[K, 3]`` of grid coordinates inside ``[0, R]`` and the kept mask."""
    res = np.asarray(resolution)
    keep = np.all((u >= 0.0) & (u <= res), axis=1)
    idx = np.minimum(np.floor(u[keep]).astype(np.int64), res - 1)
    return idx, keep


def _flat(idx: np.ndarray, resolution: Sequence[int]) -> np.ndarray:
    # Fortran order (x fastest), the order NIfTI stores voxels in: writers then need no transposing copy.
    rx, ry, rz = resolution
    return (idx[:, 2] * ry + idx[:, 1]) * rx + idx[:, 0]


def _scale_to_peak(vols: np.ndarray) -> np.ndarray:
    """Divide each ``[B, ...]`` volume by its own maximum (left as is when the maximum is <= 0)."""
    peak = vols.reshape(len(vols), -1).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0).reshape((-1,) + (1,) * (vols.ndim - 1))
    return vols / peak


def voxelize_batch(clouds: Sequence[np.ndarray], grids: Sequence[Grid], method: str = "occupancy",
                   weights: Sequence[np.ndarray | None] | None = None, sigma: float = 1.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Voxelize several clouds (all with the same resolution) in one vectorised pass.

    Args:
        clouds: ``[P_i, >=3]`` finite points (first three columns used).
        grids: one :class:`Grid` per cloud (same resolution).
        method: ``occupancy`` | ``density`` | ``gaussian`` (see the module docstring).
        weights: optional non-negative ``[P_i]`` weights per cloud (density and gaussian).
        sigma: gaussian standard deviation in voxels.

    Returns:
        (volumes ``[B, Rx, Ry, Rz]`` float32, each volume Fortran-contiguous; points dropped
        outside the grid per cloud ``[B]``).
    """
    if method not in METHODS:
        raise MedgenError(f"unknown method {method!r}", f"use one of {', '.join(METHODS)}")
    if not clouds:
        raise MedgenError("no clouds to voxelize")
    res = grids[0].resolution
    if any(g.resolution != res for g in grids):
        raise MedgenError("all clouds of a batch need the same resolution")
    nvox = int(np.prod(res))
    if method == "gaussian":
        if not sigma > 0:
            raise MedgenError(f"--sigma must be positive, not {sigma}")
        out = [_gaussian_one(c, g, None if weights is None else weights[i], sigma) for i, (c, g) in enumerate(zip(clouds, grids))]
        return np.stack([o[0] for o in out]), np.array([o[1] for o in out], dtype=np.int64)
    flats, wts, outside = [], [], []
    for b, (c, g) in enumerate(zip(clouds, grids)):
        idx, keep = voxel_indices(g.to_grid(c), res)
        outside.append(int(len(keep) - keep.sum()))
        flats.append(_flat(idx, res) + b * nvox)
        if method == "density" and weights is not None and weights[b] is not None:
            wts.append(np.asarray(weights[b], dtype=np.float64)[keep])
        else:
            wts.append(np.ones(len(idx)))
    flat = np.concatenate(flats)
    if method == "occupancy":
        vols = np.zeros(nvox * len(clouds), dtype=np.float32)
        vols[flat] = 1.0
    else:
        vols = np.bincount(flat, weights=np.concatenate(wts), minlength=nvox * len(clouds))
        vols = _scale_to_peak(vols.reshape(len(clouds), nvox)).astype(np.float32)
    # [B, Rz, Ry, Rx] in C order == [B, Rx, Ry, Rz] with each volume Fortran-contiguous (a view).
    vols = vols.reshape((len(clouds),) + tuple(res)[::-1]).transpose(0, 3, 2, 1)
    return vols, np.array(outside, dtype=np.int64)


def _gaussian_one(cloud: np.ndarray, grid: Grid, w: np.ndarray | None, sigma: float) -> tuple[np.ndarray, int]:
    res = np.asarray(grid.resolution)
    u = grid.to_grid(cloud)
    keep = np.all((u >= 0.0) & (u <= res), axis=1)
    u = u[keep]
    wt = np.ones(len(u)) if w is None else np.asarray(w, dtype=np.float64)[keep]
    r = int(math.ceil(3.0 * sigma))
    offs = np.arange(-r, r + 1)
    base = np.minimum(np.floor(u).astype(np.int64), res - 1)  # [K, 3]
    cells = base[:, :, None] + offs  # [K, 3, W] voxel index per axis
    g1 = np.exp(-((cells + 0.5 - u[:, :, None]) ** 2) / (2.0 * sigma * sigma))  # separable 1D factors
    g1 = np.where((cells >= 0) & (cells < res[None, :, None]), g1, 0.0)  # outside the grid: no voxel
    vals = (g1[:, 0, :, None, None] * g1[:, 1, None, :, None] * g1[:, 2, None, None, :]) * wt[:, None, None, None]
    cx = np.clip(cells, 0, res[None, :, None] - 1)
    flat = (cx[:, 0, :, None, None] * res[1] + cx[:, 1, None, :, None]) * res[2] + cx[:, 2, None, None, :]
    vol = np.bincount(flat.ravel(), weights=vals.ravel(), minlength=int(np.prod(res)))
    vol = _scale_to_peak(vol[None])[0].reshape(tuple(res)).astype(np.float32)
    return vol, int(len(keep) - keep.sum())


def voxelize(cloud: np.ndarray, grid: Grid, method: str = "occupancy", weights: np.ndarray | None = None,
             sigma: float = 1.0) -> np.ndarray:
    """Voxelize one cloud; returns a float32 ``[Rx, Ry, Rz]`` volume (see :func:`voxelize_batch`)."""
    vols, _ = voxelize_batch([cloud], [grid], method, None if weights is None else [weights], sigma)
    return vols[0]
