"""Volumes → point clouds and point-file IO (``.h5``, ``.ply``, ``.npy``).

``volume_to_points`` returns the centres of the voxels above a threshold in world coordinates:
``world = A[:3, :3] @ (i, j, k) + A[:3, 3]`` with the NIfTI affine ``A`` (voxel centres sit at
integer indices in the NIfTI convention). ``medgen data convert-h5`` writes the affine that maps
voxel indices back to the points' own frame, so points → voxels → points returns to the original
coordinates within half a voxel.

Point files: ``.npy`` holds the ``[P, 3]`` float32 array; ``.h5`` holds ``points`` ``[P, 3]`` (and
``values`` ``[P]`` when given) — a layout ``convert-h5`` reads back as one cloud; ``.ply`` is a
binary little-endian PLY with float x, y, z (and a float ``value`` property when given).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path, check_writable

POINT_SUFFIXES = (".h5", ".hdf5", ".ply", ".npy")


def volume_to_points(volume: np.ndarray, affine: np.ndarray | None, threshold: float,
                     return_values: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Centres of the voxels with ``value > threshold``, in world coordinates.

    Args:
        volume: 3D array (a 2D array is treated as one slice, k = 0; a leading/trailing singleton
            channel is dropped).
        affine: 4x4 voxel-to-world matrix (identity when None).
        threshold: voxels strictly greater than this are kept.
        return_values: also return the kept voxels' values.

    Returns:
        ``[P, 3]`` float64 points (and ``[P]`` values when ``return_values``), in C order of the
        voxel indices.
    """
    vol = np.asarray(volume)
    vol = np.squeeze(vol) if vol.ndim > 3 else vol
    if vol.ndim == 2:
        vol = vol[:, :, None]
    if vol.ndim != 3:
        raise MedgenError(f"expected a 2D or 3D volume, got shape {np.shape(volume)}")
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise MedgenError(f"affine must be 4x4, got {aff.shape}")
    mask = vol > threshold
    idx = np.argwhere(mask).astype(np.float64)
    pts = idx @ aff[:3, :3].T + aff[:3, 3]
    if return_values:
        return pts, vol[mask].astype(np.float32)
    return pts


def save_points(points: np.ndarray, path: str | Path, values: np.ndarray | None = None,
                overwrite: bool = False) -> Path:
    """Write ``[P, 3]`` points to ``.h5``/``.hdf5``, ``.ply`` or ``.npy`` atomically.

    Raises:
        MedgenError: unknown suffix, wrong shape, or an existing file without ``overwrite``.
    """
    p = check_writable(path, overwrite)
    suffix = p.suffix.lower()
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise MedgenError(f"points must have shape [P, 3], got {pts.shape}")
    vals = None if values is None else np.asarray(values, dtype=np.float32).reshape(-1)
    if vals is not None and len(vals) != len(pts):
        raise MedgenError(f"{len(vals)} values for {len(pts)} points")
    if suffix not in POINT_SUFFIXES:
        raise MedgenError(f"unknown point-file type {p.suffix!r}", f"use one of {', '.join(POINT_SUFFIXES)}")
    with atomic_path(p) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, pts)
        elif suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(tmp, "w") as f:
                f.create_dataset("points", data=pts, compression="gzip")
                if vals is not None:
                    f.create_dataset("values", data=vals, compression="gzip")
        else:
            _write_ply(tmp, pts, vals)
    return p


def _write_ply(path: Path, pts: np.ndarray, vals: np.ndarray | None) -> None:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("value", "<f4")] if vals is not None else [])
    rec = np.empty(len(pts), dtype=fields)
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if vals is not None:
        rec["value"] = vals
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(pts)}"]
    header += [f"property float {name}" for name, _ in fields] + ["end_header"]
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(rec.tobytes())


def load_points(path: str | Path) -> np.ndarray:
    """Read ``[P, 3]`` float32 points from a file written by :func:`save_points`.

    ``.h5`` files may also hold ``data`` ``[P, 3+F]`` (first three columns used).

    Raises:
        MedgenError: missing/unreadable file or no point array.
    """
    p = Path(path)
    if not p.is_file():
        raise MedgenError(f"point file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            pts = np.load(p, allow_pickle=False)
        elif suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(p, "r") as f:
                key = next((k for k in ("points", "data") if k in f), None)
                if key is None:
                    raise MedgenError(f"{p} has no 'points' dataset", f"keys: {', '.join(f.keys()) or '(none)'}")
                pts = np.asarray(f[key])
        elif suffix == ".ply":
            pts = _read_ply(p)
        else:
            raise MedgenError(f"unknown point-file type {p.suffix!r}", f"use one of {', '.join(POINT_SUFFIXES)}")
    except MedgenError:
        raise
    except Exception as exc:
        raise MedgenError(f"cannot read points from {p}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    pts = np.asarray(pts)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise MedgenError(f"{p}: expected points of shape [P, 3], got {pts.shape}")
    return pts[:, :3].astype(np.float32)


def _read_ply(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        if fh.readline().strip() != b"ply":
            raise MedgenError(f"{path} is not a PLY file")
        props, n, fmt = [], 0, ""
        while True:
            line = fh.readline()
            if not line:
                raise MedgenError(f"{path}: truncated PLY header")
            words = line.decode("ascii").split()
            if words[:1] == ["format"]:
                fmt = words[1]
            elif words[:2] == ["element", "vertex"]:
                n = int(words[2])
            elif words[:1] == ["property"]:
                props.append(words[-1])
            elif words[:1] == ["end_header"]:
                break
        if fmt != "binary_little_endian":
            raise MedgenError(f"{path}: only binary_little_endian float PLY files are supported")
        rec = np.frombuffer(fh.read(n * 4 * len(props)), dtype=[(k, "<f4") for k in props], count=n)
    return np.stack([rec["x"], rec["y"], rec["z"]], axis=1)


def volume_file_to_points(volume: str | Path, out: str | Path, threshold: float = 0.5, values: bool = False,
                          overwrite: bool = False) -> tuple[Path, int]:
    """The library side of ``medgen data to-points``: the centres of the voxels of a NIfTI/.npy
    file above ``threshold``, in world coordinates, written to ``out`` (.h5, .ply or .npy).

    Returns:
        The written path and the number of points.

    Raises:
        MedgenError: ``out`` exists without ``overwrite``, or no voxel is above the threshold.
    """
    from medgen_cli.io import load_any_volume

    check_writable(out, overwrite)
    arr, affine = load_any_volume(Path(volume))
    pts, vals = volume_to_points(arr, affine, threshold, return_values=True)
    if len(pts) == 0:
        raise MedgenError(f"no voxel of {volume} is above {threshold} (max {float(arr.max()):.4g})", "lower --threshold")
    return save_points(pts, out, values=vals if values else None, overwrite=overwrite), len(pts)
