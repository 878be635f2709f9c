"""Per-volume statistics for ``medgen viz slices`` (shape, spacing, range, occupancy)."""

from __future__ import annotations

from typing import Any

import numpy as np


def volume_stats(path: str, volume: np.ndarray, affine: np.ndarray | None, threshold: float = 0.0) -> dict[str, Any]:
    """Shape, voxel spacing (column norms of the affine), min/max/mean and occupancy.

    Occupancy is the fraction of voxels strictly greater than ``threshold``.
    """
    vol = np.asarray(volume, dtype=np.float32)
    finite = vol[np.isfinite(vol)]
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(aff[:3, :3], axis=0)[: min(vol.ndim, 3)]
    return {
        "path": path,
        "shape": list(vol.shape),
        "spacing": [round(float(s), 6) for s in spacing],
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "mean": float(finite.mean()) if finite.size else None,
        "occupancy": float((finite > threshold).sum() / max(vol.size, 1)),
        "nonfinite": int(vol.size - finite.size),
    }
