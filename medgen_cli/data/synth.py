"""Synthetic anatomy-like point clouds (``medgen data synth-h5``, the demo and the tests).

Three phantom classes, coordinates in mm, each randomly sized (semi-axes 12–40 mm), rotated and
shifted (±20 mm):

- 0 ``organ``: a solid ellipsoid (points uniform inside, like a liver or a tumour);
- 1 ``shell``: a hollow ellipsoidal shell, thickness 15% of the radius (like a bladder wall);
- 2 ``pair``: two solid ellipsoids side by side (like lungs or kidneys).

The optional per-point value is an intensity ``1 - 0.5 * r`` (r: normalised radius inside the
part), so value-weighted voxelization has something to weigh.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path, check_writable

PHANTOM_CLASSES = ("organ", "shell", "pair")
SYNTH_LAYOUTS = ("fixed", "groups", "concat")


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _ellipsoid(rng: np.random.Generator, n: int, axes: np.ndarray, r_min: float) -> tuple[np.ndarray, np.ndarray]:
    """n points in the ellipsoid with semi-axes ``axes`` at normalised radius in [r_min, 1]."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    # Uniform in volume between r_min and 1: r^3 uniform in [r_min^3, 1].
    r = np.cbrt(rng.uniform(r_min ** 3, 1.0, size=(n, 1)))
    return d * r * axes, 1.0 - 0.5 * r[:, 0]


def _phantom(rng: np.random.Generator, label: int, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    axes = rng.uniform(12.0, 40.0, size=3)
    if label == 0:
        pts, val = _ellipsoid(rng, n_points, axes, 0.0)
    elif label == 1:
        pts, val = _ellipsoid(rng, n_points, axes, 0.85)
    else:
        half = n_points // 2
        small = axes * np.array([0.45, 0.8, 0.8])
        a, va = _ellipsoid(rng, half, small, 0.0)
        b, vb = _ellipsoid(rng, n_points - half, small * rng.uniform(0.8, 1.0), 0.0)
        gap = small[0] * 1.15
        pts = np.concatenate([a - [gap, 0, 0], b + [gap, 0, 0]])
        val = np.concatenate([va, vb])
    pts = pts @ _rotation(rng).T + rng.uniform(-20.0, 20.0, size=3)
    return pts.astype(np.float32), val.astype(np.float32)


def make_phantom_clouds(n: int, n_points: int = 2048, seed: int = 0, vary_points: bool = False,
                        with_values: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` phantom clouds and their class labels (deterministic for a seed).

    Args:
        n: number of clouds; labels cycle 0, 1, 2, 0, ... so every class is present.
        n_points: points per cloud (the maximum when ``vary_points``).
        seed: random seed.
        vary_points: draw each cloud's point count in [0.75, 1] × ``n_points`` (ragged data).
        with_values: append a per-point intensity column (clouds become ``[P, 4]``).

    Returns:
        (clouds, labels): a list of float32 ``[P, 3]`` (or ``[P, 4]``) arrays in mm and an int64
        ``[n]`` array of indices into :data:`PHANTOM_CLASSES`.
    """
    if n < 1 or n_points < 1:
        raise MedgenError(f"need n >= 1 and n_points >= 1 (got n={n}, n_points={n_points})")
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % len(PHANTOM_CLASSES)
    clouds = []
    for lab in labels:
        count = int(rng.integers(max(1, (3 * n_points) // 4), n_points + 1)) if vary_points else n_points
        pts, val = _phantom(rng, int(lab), count)
        clouds.append(np.concatenate([pts, val[:, None]], axis=1) if with_values else pts)
    return clouds, labels


def write_synth_h5(path: str | Path, n: int, n_points: int = 2048, seed: int = 0, layout: str = "fixed",
                   with_values: bool = False, overwrite: bool = False) -> Path:
    """Write phantom clouds to an HDF5 file in one of the layouts ``convert-h5`` reads.

    Layouts:
        ``fixed``: ``data`` ``[N, P, 3]`` (``[N, P, 4]`` with values) and ``label`` ``[N]``;
        ``groups``: ``clouds/<sample_00000>/points`` ``[P_i, 3]`` (+ ``values`` ``[P_i]``) with a
        ``label`` attribute per group; ``concat``: ``points`` ``[sum P_i, 3(+1)]``, ``lengths``
        ``[N]`` and ``label`` ``[N]``. The ragged layouts vary the point count per cloud.

    Raises:
        MedgenError: unknown layout, or an existing file without ``overwrite``.
    """
    import h5py

    if layout not in SYNTH_LAYOUTS:
        raise MedgenError(f"unknown layout {layout!r}", f"use one of {', '.join(SYNTH_LAYOUTS)}")
    p = check_writable(path, overwrite)
    clouds, labels = make_phantom_clouds(n, n_points, seed, vary_points=layout != "fixed", with_values=with_values)
    with atomic_path(p) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["generator"] = "medgen data synth-h5"
            f.attrs["classes"] = ",".join(PHANTOM_CLASSES)
            if layout == "fixed":
                # Uncompressed: float coordinates barely compress, and contiguous reads are fastest.
                f.create_dataset("data", data=np.stack(clouds))
                f.create_dataset("label", data=labels)
            elif layout == "groups":
                grp = f.create_group("clouds")
                for i, (c, lab) in enumerate(zip(clouds, labels)):
                    g = grp.create_group(f"sample_{i:05d}")
                    g.create_dataset("points", data=c[:, :3])
                    if with_values:
                        g.create_dataset("values", data=c[:, 3])
                    g.attrs["label"] = int(lab)
            else:
                f.create_dataset("points", data=np.concatenate(clouds))
                f.create_dataset("lengths", data=np.array([len(c) for c in clouds], dtype=np.int64))
                f.create_dataset("label", data=labels)
    return p
