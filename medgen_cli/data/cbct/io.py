"""CBCT case files: one H5 per case with its windowed volume and simulated cone-beam projections.

Case file layout (``DIR/{train,val,test}/<case>.h5``):

* ``volume``: float32 ``(z, y, x)`` attenuation in [0, 1] (HU window mapped linearly, clipped);
* ``projections``: float32 ``(num_angles, U, V)`` diffct line integrals of ``volume`` in mm;
* ``angles``: float64 ``(num_angles,)`` radians;
* ``affine``: 4×4 voxel-to-world matrix of ``volume`` transposed to NIfTI ``(x, y, z)`` order;
* attributes ``geometry_*`` (:class:`~medgen_cli.data.cbct.geometry.CBCTGeometry`), ``hu_min``, ``hu_max``,
  ``source``.

``DIR/manifest.json`` (:mod:`medgen_cli.data.cbct.build`) records the geometry, window, seed and
split so a resumed run cannot mix settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgen_cli.data.cbct.geometry import CBCTGeometry
from medgen_cli.data.cbct.grids import grid_affine
from medgen_cli.data.cbct.phantoms import HU_WINDOW
from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path


@dataclass
class CBCTCase:
    """One case read from an H5 file."""

    name: str
    volume: np.ndarray        # (z, y, x) in [0, 1]
    projections: np.ndarray   # (views, U, V)
    angles: np.ndarray        # (views,) radians
    geometry: CBCTGeometry
    affine: np.ndarray        # 4x4, NIfTI (x, y, z) order


def simulate(volume_zyx: np.ndarray, geometry: CBCTGeometry, angles: np.ndarray | None = None) -> np.ndarray:
    """Cone-beam projections ``(views, U, V)`` of a ``(z, y, x)`` volume with diffct."""
    import torch

    ang = geometry.angles() if angles is None else np.asarray(angles)
    with torch.no_grad():
        proj = geometry.project_volume(torch.as_tensor(volume_zyx, dtype=torch.float32), ang)
    return proj.cpu().numpy().astype(np.float32)


def write_case(path: Path, volume: np.ndarray, projections: np.ndarray, angles: np.ndarray,
               geometry: CBCTGeometry, affine: np.ndarray, source: str = "",
               hu_window: tuple[float, float] = HU_WINDOW, settings: str = "") -> Path:
    """Write one case H5 atomically (see the module docstring for the layout)."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("volume", data=volume.astype(np.float32), compression="gzip")
            f.create_dataset("projections", data=projections.astype(np.float32), compression="gzip")
            f.create_dataset("angles", data=np.asarray(angles, dtype=np.float64))
            f.create_dataset("affine", data=np.asarray(affine, dtype=np.float64))
            for k, v in geometry.to_attrs().items():
                f.attrs[k] = v
            f.attrs["hu_min"], f.attrs["hu_max"], f.attrs["source"] = hu_window[0], hu_window[1], source
            f.attrs["settings"] = settings  # make-cbct's settings hash: a resume rebuilds stale files
    return path


def read_case(path: str | Path) -> CBCTCase:
    """Read a case H5; a one-line error for missing files, missing datasets or missing geometry."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise MedgenError(f"case file not found: {p}")
    try:
        with h5py.File(p, "r") as f:
            geometry = CBCTGeometry.from_attrs(f.attrs, source=f"case file {p}")
            missing = [k for k in ("volume", "projections", "angles") if k not in f]
            if missing:
                raise MedgenError(f"case file {p} lacks dataset(s) {', '.join(missing)}",
                                  "make case files with `medgen data make-cbct`")
            affine = f["affine"][()] if "affine" in f else grid_affine(geometry)
            case = CBCTCase(p.stem, f["volume"][()], f["projections"][()], f["angles"][()], geometry, affine)
    except OSError as exc:
        raise MedgenError(f"cannot read case file {p}: {str(exc).splitlines()[0]}") from exc
    return case


def list_cases(directory: str | Path) -> list[Path]:
    """Sorted ``*.h5`` case files of one split directory (error when there are none)."""
    d = Path(directory)
    files = sorted(d.glob("*.h5")) if d.is_dir() else []
    if not files:
        raise MedgenError(f"no case files (*.h5) in {d}", "run `medgen data make-cbct` and point at a split folder")
    return files


def view_indices(total: int, num: int, start: int = 0) -> list[int]:
    """``num`` of ``total`` stored views spread evenly, beginning at ``start`` (the model, in training
    and reconstruction, and the FDK/SIRT baselines use the same rule)."""
    if not 1 <= num <= total:
        raise MedgenError(f"{num} views requested but the case stores {total} projections",
                          f"use --views between 1 and {total}")
    return [(start + round(i * total / num)) % total for i in range(num)]
