"""Synthetic CT phantoms in HU and the HU window that maps CT to [0, 1]."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

#: HU mapped to 0 and 1 by :func:`window` (air -1000 → 0).
HU_WINDOW = (-1000.0, 1024.0)


def phantom_hu(size: int, seed: int = 0) -> np.ndarray:
    """A random Shepp-Logan-like 3D phantom in HU, ``(z, y, x)``, air outside.

    A water body with a bone shell, two lungs and a few soft-tissue/contrast lesions; centres,
    axes, rotations and intensities are jittered per seed. Everything stays within 0.62 of the
    half-extent in x/y and 0.75 in z, so the default geometry sees the whole object.
    """
    rng = np.random.default_rng(seed)
    c = (np.arange(size) + 0.5) / size * 2 - 1
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    vol = np.full((size, size, size), -1000.0, dtype=np.float32)

    def ellipsoid(center: Iterable[float], axes: Iterable[float], phi: float) -> np.ndarray:
        cx, cy, cz = center
        ax, ay, az = axes
        xr = (x - cx) * math.cos(phi) + (y - cy) * math.sin(phi)
        yr = -(x - cx) * math.sin(phi) + (y - cy) * math.cos(phi)
        return (xr / ax) ** 2 + (yr / ay) ** 2 + ((z - cz) / az) ** 2 <= 1.0

    j = lambda s: rng.uniform(-s, s)  # noqa: E731  (tiny jitter helper)
    ax, ay, az = 0.55 + j(0.05), 0.45 + j(0.05), 0.65 + j(0.05)
    phi = j(0.3)
    vol[ellipsoid((0, 0, 0), (ax, ay, az), phi)] = 700.0 + j(150)           # bone shell
    vol[ellipsoid((0, 0, 0), (ax - 0.06, ay - 0.06, az - 0.05), phi)] = 40.0 + j(20)  # soft tissue
    for side in (-1, 1):  # lungs
        vol[ellipsoid((side * (0.22 + j(0.04)), j(0.05), j(0.1)), (0.15 + j(0.03), 0.25 + j(0.04), 0.4 + j(0.08)),
                      j(0.4))] = -800.0 + j(60)
    for _ in range(int(rng.integers(2, 5))):  # lesions / vessels
        vol[ellipsoid((j(0.3), j(0.25), j(0.4)), (0.05 + rng.uniform(0, 0.08),) * 2 + (0.05 + rng.uniform(0, 0.1),),
                      j(1.5))] = float(rng.uniform(-100, 400))
    return vol


def window(hu: np.ndarray, hu_min: float = HU_WINDOW[0], hu_max: float = HU_WINDOW[1]) -> np.ndarray:
    """Map HU linearly to [0, 1] (``hu_min`` → 0, ``hu_max`` → 1), clipped."""
    return np.clip((np.asarray(hu, dtype=np.float32) - hu_min) / (hu_max - hu_min), 0.0, 1.0)
