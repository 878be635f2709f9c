"""CBCT data: CT volumes → windowed grids + simulated cone-beam projections, one H5 per case.

Case file layout (``DIR/{train,val,test}/<case>.h5``):

* ``volume``: float32 ``(z, y, x)`` attenuation in [0, 1] (HU window mapped linearly, clipped);
* ``projections``: float32 ``(num_angles, U, V)`` diffct line integrals of ``volume`` in mm;
* ``angles``: float64 ``(num_angles,)`` radians;
* ``affine``: 4×4 voxel-to-world matrix of ``volume`` transposed to NIfTI ``(x, y, z)`` order;
* attributes ``geometry_*`` (:class:`~medgen_cli.data.geometry.CBCTGeometry`), ``hu_min``, ``hu_max``,
  ``source``.

``DIR/manifest.json`` records the geometry, window, seed and split so a resumed run cannot mix
settings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from medgen_cli.data.geometry import CBCTGeometry
from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path

SPLITS = ("train", "val", "test")
HU_WINDOW = (-1000.0, 1024.0)


@dataclass
class CBCTCase:
    """One case read from an H5 file."""

    name: str
    volume: np.ndarray        # (z, y, x) in [0, 1]
    projections: np.ndarray   # (views, U, V)
    angles: np.ndarray        # (views,) radians
    geometry: CBCTGeometry
    affine: np.ndarray        # 4x4, NIfTI (x, y, z) order


# ---- synthetic phantoms ------------------------------------------------------------------------
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


# ---- resampling real volumes -------------------------------------------------------------------
def resample_to_grid(array_xyz: np.ndarray, affine: np.ndarray, geometry: CBCTGeometry,
                     hu_window: tuple[float, float] = HU_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Window a NIfTI CT array and resample/crop/pad it to the geometry's grid (centre-aligned).

    Args:
        array_xyz: HU values in NIfTI ``(x, y, z)`` voxel order.
        affine: its voxel-to-world matrix.
        geometry: target grid (``volume_size`` voxels of ``voxel_spacing`` mm).
        hu_window: HU mapped to 0 and 1.

    Returns:
        ``(volume_zyx in [0, 1], affine of the new grid in (x, y, z) order)``.
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
    factor = st / spacing                               # input voxels per target voxel, per axis
    win = window(arr, *hu_window)
    sigma = np.where(factor > 1, (factor - 1) * 0.5, 0.0)  # anti-alias before down-sampling
    if np.any(sigma > 0):
        win = gaussian_filter(win, sigma=sigma, mode="nearest")
    # Target voxel j ↦ input index c_in + (j - (n-1)/2) * factor (centres aligned).
    centre = (np.asarray(arr.shape) - 1) / 2.0
    offs = (np.arange(n) - (n - 1) / 2.0)
    idx = [centre[a] + offs * factor[a] for a in range(3)]                     # x, y, z indices
    norm = [torch.as_tensor(2 * idx[a] / max(arr.shape[a] - 1, 1) - 1, dtype=torch.float32) for a in range(3)]
    gz, gy, gx = torch.meshgrid(norm[2], norm[1], norm[0], indexing="ij")      # output (z, y, x)
    grid = torch.stack((gz, gy, gx), dim=-1)[None]   # grid_sample (W, H, D) order of the xyz input
    inp = torch.as_tensor(np.ascontiguousarray(win), dtype=torch.float32)[None, None]  # (1,1,X,Y,Z)
    out = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0, 0]
    aff_in = np.asarray(affine, dtype=np.float64)
    t = np.eye(4)
    t[:3, :3] = np.diag(factor)
    t[:3, 3] = centre - (n - 1) / 2.0 * factor
    return out.numpy().astype(np.float32), aff_in @ t


def grid_affine(geometry: CBCTGeometry) -> np.ndarray:
    """Affine of a synthetic grid: spacing on the diagonal, world origin at the volume centre."""
    n, s = geometry.volume_size, geometry.voxel_spacing
    aff = np.diag([s, s, s, 1.0])
    aff[:3, 3] = -(n - 1) / 2.0 * s
    return aff


# ---- case files -------------------------------------------------------------------------------
def simulate(volume_zyx: np.ndarray, geometry: CBCTGeometry, angles: np.ndarray | None = None) -> np.ndarray:
    """Cone-beam projections ``(views, U, V)`` of a ``(z, y, x)`` volume with diffct."""
    import torch

    ang = geometry.angles() if angles is None else np.asarray(angles)
    with torch.no_grad():
        proj = geometry.project_volume(torch.as_tensor(volume_zyx, dtype=torch.float32), ang)
    return proj.cpu().numpy().astype(np.float32)


def write_case(path: Path, volume: np.ndarray, projections: np.ndarray, angles: np.ndarray,
               geometry: CBCTGeometry, affine: np.ndarray, source: str = "",
               hu_window: tuple[float, float] = HU_WINDOW) -> Path:
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


def assign_splits(names: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Deterministic split of ``names``; val and test get at least one case each when n ≥ 3."""
    order = list(np.random.default_rng(seed).permutation(len(names)))
    n = len(names)
    n_val = max(1, round(n * fractions[1])) if n >= 3 else 0
    n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
    split = {}
    for rank, i in enumerate(order):
        split[names[i]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return split


def _check_manifest(out: Path, manifest: dict[str, Any], overwrite: bool) -> None:
    path = out / "manifest.json"
    if path.is_file() and not overwrite:
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in manifest if k != "split"} != {k: v for k, v in manifest.items() if k != "split"}:
            raise MedgenError(f"{out} was made with other settings (geometry, window, seed or inputs)",
                              "pass --overwrite to rebuild it, or choose another --out")


def make_cbct(sources: list[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]], out: str | Path,
              geometry: CBCTGeometry, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
              overwrite: bool = False, allow_truncation: bool = False, is_hu_grid: bool = False,
              track: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None) -> dict[str, Any]:
    """Turn CT volumes into per-case H5 files with projections; resumable.

    Args:
        sources: ``(case name, loader)``; a loader returns ``(HU array, affine)`` — a NIfTI
            ``(x, y, z)`` array, or with ``is_hu_grid`` a ``(z, y, x)`` array already on the grid.
        out: output folder (``train/``, ``val/``, ``test/``, ``manifest.json``).
        geometry: the scan; ``volume_size``/``voxel_spacing`` define the grid.
        fractions: train/val/test fractions.
        seed: split seed.
        overwrite: rebuild existing case files (otherwise they are kept: resume).
        allow_truncation: accept objects that leave the detector's field of view.
        is_hu_grid: sources already give ``(z, y, x)`` HU grids (synthetic phantoms).
        track: progress wrapper ``track(iterable, total, description)``.

    Returns:
        Summary ``{"written": n, "skipped": n, "split": {case: split}}``.
    """
    geometry.check()
    out = Path(out)
    names = [name for name, _ in sources]
    if len(set(names)) != len(names):
        raise MedgenError("two input volumes have the same case name", "rename one of them")
    split = assign_splits(names, fractions, seed)
    manifest = {"geometry": geometry.model_dump(), "hu_window": list(HU_WINDOW), "seed": seed,
                "fractions": list(fractions), "cases": sorted(names), "split": split}
    _check_manifest(out, manifest, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    angles = geometry.angles()
    written = skipped = 0
    items: Iterable[Any] = sources if track is None else track(sources, len(sources), "make-cbct")
    try:
        for name, load in items:
            target = out / split[name] / f"{name}.h5"
            if target.is_file() and not overwrite:
                skipped += 1
                continue
            hu, affine = load()
            vol, affine = (window(hu), affine) if is_hu_grid else resample_to_grid(hu, affine, geometry)
            if not allow_truncation:
                try:
                    geometry.check_field_of_view(vol)
                except MedgenError as exc:
                    raise MedgenError(f"case {name}: {exc.message}", exc.hint) from exc
            write_case(target, vol, simulate(vol, geometry, angles), angles, geometry, affine, source=name)
            written += 1
    finally:
        close = getattr(items, "close", None)
        if close is not None:  # stop the progress bar now, not at interpreter shutdown
            close()
    return {"written": written, "skipped": skipped, "split": split, "out": str(out)}


def synthetic_sources(num: int, geometry: CBCTGeometry, seed: int = 0) -> list[tuple[str, Callable[[], Any]]]:
    """``num`` phantom loaders named ``phantom_0000`` … (for tests and the demo)."""
    def loader(i: int) -> Callable[[], Any]:
        return lambda: (phantom_hu(geometry.volume_size, seed * 100003 + i), grid_affine(geometry))

    return [(f"phantom_{i:04d}", loader(i)) for i in range(num)]


def nifti_sources(directory: str | Path) -> list[tuple[str, Callable[[], Any]]]:
    """Loaders for every ``*.nii``/``*.nii.gz`` in ``directory`` (error when there are none)."""
    from medgen_cli.io import load_nifti

    d = Path(directory)
    if not d.is_dir():
        raise MedgenError(f"volume folder not found: {d}")
    files = sorted([*d.glob("*.nii"), *d.glob("*.nii.gz")])
    if not files:
        raise MedgenError(f"no NIfTI volumes (*.nii, *.nii.gz) in {d}")
    return [(f.name.removesuffix(".gz").removesuffix(".nii"), (lambda f=f: load_nifti(f))) for f in files]


# ---- classical baselines (diffct) ------------------------------------------------------------
def view_indices(total: int, num: int) -> list[int]:
    """``num`` of ``total`` stored views spread evenly from the first (the model uses the same)."""
    if not 1 <= num <= total:
        raise MedgenError(f"{num} views requested but the case stores {total} projections",
                          f"use --views between 1 and {total}")
    return [round(i * total / num) % total for i in range(num)]


def classical_recon(case: CBCTCase, num_views: int, method: str = "fdk", iterations: int = 50) -> np.ndarray:
    """FDK or SIRT reconstruction ``(z, y, x)`` of a case from ``num_views`` evenly spread views.

    FDK: diffct's flat-detector FDK (ram-lak, angular weights from the actual view angles).
    SIRT: diffct's row/column-normalised SIRT with a non-negativity constraint, ``iterations`` steps.
    """
    import torch
    from diffct import fdk, sirt

    geo = case.geometry
    idx = view_indices(len(case.angles), num_views)
    ang = torch.as_tensor(case.angles[idx], dtype=torch.float32)
    sino = torch.as_tensor(case.projections[idx], dtype=torch.float32)
    n = geo.volume_size
    with torch.no_grad():
        if method == "fdk":
            vol = fdk(sino, geo.trajectory(ang), (n, n, n), ang, detector_spacing=geo.detector_spacing,
                      voxel_spacing=geo.voxel_spacing, backend="torch")
        elif method == "sirt":
            vol = sirt(geo.projector(ang), sino, iterations=iterations).volume
        else:
            raise MedgenError(f"unknown reconstruction method '{method}'", "use fdk or sirt")
    return vol.cpu().numpy().astype(np.float32)
