"""Shape sets for the 3D benchmarks, made from what packages ship, through ``medgen data convert-h5``.

Two kinds, both written as ``OUT/train``, ``OUT/val`` NIfTI volumes (and ``OUT/manifest.json``
with labels) exactly as a user's point clouds would be:

* ``synthetic``: medgen's phantom classes (``medgen data synth-h5``: organ, shell, pair).
* ``anatomy``: surfaces of real anatomy from nilearn's MNI152 masks (package data, no download):
  class 0 the brain's outer surface, class 1 the white-matter surface, class 2 one hemisphere
  (the left half of the brain mask, closed). Each cloud is that surface (marching cubes) under a
  random pose (rotation up to ±25° per axis, anisotropic scale 0.85–1.15) and a smooth random
  deformation (a few mm, low-frequency), sampled as ``--points`` points uniformly over its area.

Run by hand (the quality benchmark calls it when it is given no ``--data``)::

    python -m benchmarks.make_shape_data --kind anatomy --size 32 --out runs/shape-data/anatomy32
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ANATOMY_CLASSES = ("brain", "white-matter", "hemisphere")


def _masks() -> list[np.ndarray]:
    """The three class masks on the 2 mm MNI152 grid (bool), and nothing else from nilearn."""
    from nilearn import datasets

    brain = datasets.load_mni152_brain_mask(resolution=2).get_fdata() > 0.5
    wm = datasets.load_mni152_wm_mask(resolution=2).get_fdata() > 0.5
    hemi = brain.copy()
    hemi[brain.shape[0] // 2:] = False  # voxel x below the midline: one hemisphere
    return [brain, wm, hemi]


def _surface(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (mm, centred) and faces of the mask's boundary."""
    from scipy import ndimage
    from skimage import measure

    smooth = ndimage.gaussian_filter(np.pad(mask.astype(np.float32), 2), 1.0)
    verts, faces, _, _ = measure.marching_cubes(smooth, 0.5, spacing=(2.0, 2.0, 2.0))
    return verts - verts.mean(axis=0), faces


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    out = np.eye(3)
    for axis in range(3):
        a = np.deg2rad(rng.uniform(-max_deg, max_deg))
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = out @ r
    return out


def _deform(rng: np.random.Generator, pts: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random displacement: three random low-frequency sinusoids per axis."""
    scale = np.abs(pts).max()
    disp = np.zeros_like(pts)
    for axis in range(3):
        for _ in range(3):
            k = rng.normal(size=3) * (1.5 / scale)
            disp[:, axis] += amplitude / 3 * np.sin(pts @ k + rng.uniform(0, 2 * np.pi))
    return pts + disp


def _sample_surface(rng: np.random.Generator, verts: np.ndarray, faces: np.ndarray, n: int) -> np.ndarray:
    tri = verts[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    idx = rng.choice(len(faces), n, p=area / area.sum())
    u, v = rng.random((2, n))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[idx]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def anatomy_clouds(n: int, points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``[n, points, 3]`` posed, deformed anatomical surfaces (mm) and their labels (cycling)."""
    rng = np.random.default_rng(seed)
    surfaces = [_surface(m) for m in _masks()]
    labels = np.arange(n) % len(surfaces)
    clouds = []
    for lab in labels:
        verts, faces = surfaces[lab]
        v = _deform(rng, verts, amplitude=6.0)
        v = v @ (_rotation(rng, 25.0) * rng.uniform(0.85, 1.15, size=3)[None, :]).T
        clouds.append(_sample_surface(rng, v, faces, points))
    return np.stack(clouds).astype(np.float32), labels.astype(np.int64)


def write_anatomy_h5(path: Path, n: int, points: int, seed: int = 0) -> Path:
    import h5py

    clouds, labels = anatomy_clouds(n, points, seed)
    tmp = path.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as f:
        f.attrs["generator"] = "benchmarks/make_shape_data.py (nilearn MNI152 masks)"
        f.attrs["classes"] = ",".join(ANATOMY_CLASSES)
        f.create_dataset("data", data=clouds)
        f.create_dataset("label", data=labels)
    tmp.replace(path)
    return path


def make_shape_data(kind: str, size: int, out: Path, n: int = 192, points: int = 4096, seed: int = 0,
                    method: str = "occupancy") -> Path:
    """``out`` with train/ and val/ volumes (a third to val); reused when it is already there."""
    if (out / "val").is_dir() and (out / "manifest.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    h5 = out.parent / f"{out.name}.h5"
    medgen = [sys.executable, "-m", "medgen_cli"]
    if kind == "synthetic":
        subprocess.run([*medgen, "data", "synth-h5", "--out", str(h5), "--n", str(n), "--points", str(points),
                        "--seed", str(seed), "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    elif kind == "anatomy":
        write_anatomy_h5(h5, n, points, seed)
    else:
        raise SystemExit(f"unknown kind {kind!r}: synthetic | anatomy")
    subprocess.run([*medgen, "data", "convert-h5", str(h5), "--out", str(out), "-r", str(size), "-m", method,
                    "--val-fraction", "0.34", "--seed", str(seed), "--workers", "1", "--overwrite"],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=["synthetic", "anatomy"], default="anatomy")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--n", type=int, default=192, help="clouds (a third go to val)")
    ap.add_argument("--points", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="occupancy", help="convert-h5 -m: occupancy | density | gaussian")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    print(make_shape_data(a.kind, a.size, a.out, a.n, a.points, a.seed, a.method))


if __name__ == "__main__":
    main()
