"""The input of ``medgen recon``: a case file (``CASE.h5`` from ``make-cbct``: its stored
projections, grid and affine) or a CT volume (``.nii``/``.nii.gz`` in HU: resampled to the
geometry's grid and its views simulated; reconstructed at the input's own voxels, so the result
lies on the input's grid with its affine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medgen_cli.data.cbct.geometry import CBCTGeometry, load_geometry
from medgen_cli.data.cbct.grids import input_points, resample_to_grid
from medgen_cli.data.cbct.io import CBCTCase, read_case, simulate, view_indices
from medgen_cli.errors import MedgenError
from medgen_cli.recon.base import Track


def is_nifti(path: Path) -> bool:
    """Whether ``path`` names a NIfTI volume (else a case file)."""
    return str(path).lower().endswith((".nii", ".nii.gz"))


def _simulate_views(vol: np.ndarray, geometry: CBCTGeometry, angles: np.ndarray, track: Track | None) -> np.ndarray:
    """Projections of ``vol`` at ``angles``, one view at a time so the progress shows (same values)."""
    views = range(len(angles)) if track is None else track(range(len(angles)), len(angles),
                                                            f"simulating {len(angles)} views")
    return np.concatenate([simulate(vol, geometry, angles[i:i + 1]) for i in views], axis=0)


def nifti_case(path: Path, geometry: CBCTGeometry, views: int,
               track: Track | None = None) -> tuple[CBCTCase, np.ndarray, np.ndarray, tuple[int, ...]]:
    """A NIfTI CT volume → (case with ``views`` simulated views, input affine, normalised query
    points of the input's voxels in NIfTI raster order, input shape)."""
    from medgen_cli.io import load_nifti

    arr, affine = load_nifti(path)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise MedgenError(f"{path} is not a 3D volume (shape {tuple(arr.shape)})")
    vol, _ = resample_to_grid(arr, affine, geometry)
    geometry.check_field_of_view(vol)
    full = geometry.angles()
    idx = view_indices(len(full), views)
    # Only the views used are simulated; stored as a "case" holding exactly those views.
    case = CBCTCase(path.name, vol, _simulate_views(vol, geometry, full[idx], track), full[idx], geometry, affine)
    return case, np.asarray(affine), input_points(arr.shape, affine, geometry), tuple(arr.shape)


def input_geometry(input_path: Path, geometry: Path | None) -> tuple[CBCTGeometry, str]:
    """The geometry a classical method reconstructs ``input_path`` with, and where it came from:
    a case file's own, or for a NIfTI input the ``--geometry`` file (default: LUNA16)."""
    if is_nifti(input_path):
        geo = load_geometry(str(geometry) if geometry else None)
        source = (f"the geometry of {geometry}" if geometry else
                  "the default LUNA16 geometry (no --geometry; configs/cbct_geometry.yaml is a 64³ one)")
        return geo, source
    if geometry is not None:
        raise MedgenError("--geometry applies to a NIfTI input", "a case file carries the geometry it was made with")
    return read_case(input_path).geometry, "the case file's geometry"
