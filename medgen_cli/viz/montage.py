"""Montages of middle slices (three planes in 3D) as arrays/tensors, e.g. for TensorBoard images."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def mid_slices(vol: np.ndarray) -> list[np.ndarray]:
    """The three orthogonal middle slices of a 3D array (the array itself in 2D), each in [0, 1]."""
    v = np.asarray(vol, dtype=np.float32)
    lo, hi = float(v.min()), float(v.max())
    v = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    if v.ndim == 2:
        return [v]
    return [v[v.shape[0] // 2], v[:, v.shape[1] // 2], v[:, :, v.shape[2] // 2]]


def slice_grid(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """One row of middle slices per volume, as a float array ``[H, W]`` in [0, 1]."""
    rows = []
    for vol in volumes:
        tiles = mid_slices(vol)
        h = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 1))) for t in tiles]
        rows.append(np.pad(np.concatenate(tiles, axis=1), ((0, 1), (0, 0))))
    w = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, w - r.shape[1]))) for r in rows], axis=0)


def grid_tensor(volumes: Sequence[np.ndarray]) -> torch.Tensor:
    """:func:`slice_grid` as a ``[1, H, W]`` tensor for ``ctx.add_image``."""
    return torch.from_numpy(slice_grid(volumes))[None]
