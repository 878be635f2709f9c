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

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from medgen_cli.data.cbct_pose import PoseSpec, draw_pose, posed_names
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
                     hu_window: tuple[float, float] = HU_WINDOW,
                     pose: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Window a NIfTI CT array and resample/crop/pad it to the geometry's grid (centre-aligned).

    Args:
        array_xyz: HU values in NIfTI ``(x, y, z)`` voxel order.
        affine: its voxel-to-world matrix.
        geometry: target grid (``volume_size`` voxels of ``voxel_spacing`` mm).
        hu_window: HU mapped to 0 and 1.
        pose: optional 4×4 pose (mm about the volume centre, see :mod:`medgen_cli.data.cbct_pose`)
            applied in the same resampling.

    Returns:
        ``(volume_zyx in [0, 1], affine of the new grid in (x, y, z) order)``; the affine maps an
        output voxel to the source world point it was sampled from.
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
    pose = np.eye(4) if pose is None else np.asarray(pose, dtype=np.float64)
    zoom = abs(np.linalg.det(pose[:3, :3])) ** (1 / 3)
    factor = st / spacing / zoom                        # input voxels per target voxel, per axis
    win = window(arr, *hu_window)
    sigma = np.where(factor > 1, (factor - 1) * 0.5, 0.0)  # anti-alias before down-sampling
    if np.any(sigma > 0):
        win = gaussian_filter(win, sigma=sigma, mode="nearest")
    # Output index j ↦ p = (j - c_out)·st mm ↦ source mm A⁻¹(p - t) ↦ input index c_in + that / spacing.
    centre = (np.asarray(arr.shape) - 1) / 2.0
    inv = np.linalg.inv(pose[:3, :3])
    t = np.eye(4)
    t[:3, :3] = np.diag(1 / spacing) @ inv * st
    t[:3, 3] = centre - np.diag(1 / spacing) @ inv @ (np.full(3, (n - 1) / 2.0 * st) + pose[:3, 3])
    # grid_sample wants normalised coordinates (align_corners=True) in reversed axis order.
    to_norm_in = np.diag([*(2 / np.maximum(np.asarray(arr.shape) - 1, 1)), 1.0])
    to_norm_in[:3, 3] = -1
    from_norm_out = np.diag([(n - 1) / 2.0] * 3 + [1.0])
    from_norm_out[:3, 3] = (n - 1) / 2.0
    theta = (to_norm_in @ t @ from_norm_out)[:3]
    theta = np.concatenate([theta[::-1, :3], theta[::-1, 3:]], axis=1)  # rows: input (z, y, x)
    grid = F.affine_grid(torch.as_tensor(theta, dtype=torch.float32)[None], [1, 1, n, n, n], align_corners=True)
    inp = torch.as_tensor(np.ascontiguousarray(win), dtype=torch.float32)[None, None]  # (1,1,X,Y,Z)
    out = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0, 0]
    return out.numpy().astype(np.float32), np.asarray(affine, dtype=np.float64) @ t


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


def assign_splits(names: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Deterministic split of ``names``; a non-zero val/test fraction gets at least one case when n ≥ 3."""
    order = list(np.random.default_rng(seed).permutation(len(names)))
    n = len(names)

    def count(fraction: float) -> int:
        # A zero fraction means none (a user asking for no test split gets none).
        return max(1, round(n * fraction)) if n >= 3 and fraction > 0 else 0

    n_val, n_test = count(fractions[1]), count(fractions[2])
    split = {}
    for rank, i in enumerate(order):
        split[names[i]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return split


def _check_manifest(out: Path, manifest: dict[str, Any], overwrite: bool) -> None:
    path = out / "manifest.json"
    if path.is_file() and not overwrite:
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in manifest if k != "split"} != {k: v for k, v in manifest.items() if k != "split"}:
            raise MedgenError(f"{out} was made with other settings (geometry, window, seed, poses or inputs)",
                              "pass --overwrite to rebuild it, or choose another --out")


def _fingerprint(manifest: dict[str, Any]) -> str:
    """Hash of the settings that make a case file; stored in each file so stale ones are rebuilt."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def _is_current(path: Path, fingerprint: str) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs.get("settings", "")) == fingerprint
    except OSError:
        return False  # unreadable (cut short by a crash): rebuild it


def _prune(out: Path, expected: set[Path]) -> int:
    """Remove case files (and temporaries) in the split folders that this manifest does not list."""
    removed = 0
    for split in SPLITS:
        folder = out / split
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            if f.is_file() and (f.name.endswith(".h5") or ".part" in f.name) and f not in expected:
                f.unlink()
                removed += 1
    return removed


def make_cbct(sources: list[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]], out: str | Path,
              geometry: CBCTGeometry, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
              overwrite: bool = False, allow_truncation: bool = False, is_hu_grid: bool = False,
              track: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
              poses: PoseSpec | None = None) -> dict[str, Any]:
    """Turn CT volumes into per-case H5 files with projections; resumable.

    The output always holds exactly the cases of the current manifest: files of other settings
    or of other splits (an earlier run, one cut short) are removed or rebuilt.

    Args:
        sources: ``(case name, loader)``; a loader returns ``(HU array, affine)`` — a NIfTI
            ``(x, y, z)`` array, or with ``is_hu_grid`` a ``(z, y, x)`` array already on the grid.
        out: output folder (``train/``, ``val/``, ``test/``, ``manifest.json``).
        geometry: the scan; ``volume_size``/``voxel_spacing`` define the grid.
        fractions: train/val/test fractions (of input volumes: all poses of a volume share a split).
        seed: split seed (and pose seed).
        overwrite: rebuild existing case files (otherwise current ones are kept: resume).
        allow_truncation: accept objects that leave the detector's field of view.
        is_hu_grid: sources already give ``(z, y, x)`` HU grids (synthetic phantoms).
        track: progress wrapper ``track(iterable, total, description)``.
        poses: random poses per input volume (default: each volume once, unposed).

    Returns:
        Summary ``{"written": n, "skipped": n, "removed": n, "split": {case: split}, "warnings": [...]}``
        (a warning per written case that is constant in the field of view or one grey level).
    """
    geometry.check()
    poses = poses or PoseSpec()
    poses.check()
    out = Path(out)
    names = [name for name, _ in sources]
    if len(set(names)) != len(names):
        raise MedgenError("two input volumes have the same case name", "rename one of them")
    by_source = assign_splits(names, fractions, seed)
    split = {case: by_source[name] for name in names for case in posed_names(name, poses)}
    manifest: dict[str, Any] = {"geometry": geometry.model_dump(), "hu_window": list(HU_WINDOW), "seed": seed,
                                "fractions": list(fractions), "cases": sorted(split), "split": split}
    if poses.copies:
        manifest["poses"] = poses.to_dict()
    _check_manifest(out, manifest, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    removed = _prune(out, {out / s / f"{c}.h5" for c, s in split.items()})
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    fingerprint = _fingerprint(manifest)
    written = skipped = 0
    warnings: list[str] = []
    items: Iterable[Any] = sources if track is None else track(sources, len(sources), "make-cbct")
    try:
        for name, load in items:
            todo = [(k, c) for k, c in enumerate(posed_names(name, poses))
                    if overwrite or not _is_current(out / split[c] / f"{c}.h5", fingerprint)]
            skipped += len(posed_names(name, poses)) - len(todo)
            if todo:
                written += _write_cases(out, name, load, todo, split, geometry, is_hu_grid, allow_truncation,
                                        poses, seed, fingerprint, warnings)
    finally:
        close = getattr(items, "close", None)
        if close is not None:  # stop the progress bar now, not at interpreter shutdown
            close()
    return {"written": written, "skipped": skipped, "removed": removed, "split": split, "out": str(out),
            "warnings": warnings}


def _write_cases(out: Path, name: str, load: Callable[[], tuple[np.ndarray, np.ndarray]], todo: list[tuple[int, str]],
                 split: dict[str, str], geometry: CBCTGeometry, is_hu_grid: bool, allow_truncation: bool,
                 poses: PoseSpec, seed: int, fingerprint: str, warnings: list[str]) -> int:
    """Simulate and write the cases ``todo`` (pose index, case name) of one input volume."""
    hu, affine = load()
    angles = geometry.angles()
    for k, case in todo:
        vol, aff = _case_volume(hu, affine, geometry, is_hu_grid,
                                draw_pose(poses, name, k, seed, geometry.extent) if poses.copies else None)
        warning = case_warning(vol, hu, case)
        if warning is not None:
            warnings.append(warning)
        if not allow_truncation:
            try:
                geometry.check_field_of_view(vol)
            except MedgenError as exc:
                raise MedgenError(f"case {case}: {exc.message}", exc.hint) from exc
        write_case(out / split[case] / f"{case}.h5", vol, simulate(vol, geometry, angles), angles, geometry,
                   aff, source=name, settings=fingerprint)
    return len(todo)


def case_warning(vol: np.ndarray, hu: np.ndarray, case: str) -> str | None:
    """A warning for a case with nothing to learn (``None`` if usable): a field of view of one value,
    or an input spanning under 1% of the HU window (e.g. a [0, 1] T1 volume read as HU)."""
    lo, hi = float(np.nanmin(hu)), float(np.nanmax(hu))
    if float(vol.max()) - float(vol.min()) <= 1e-6:
        what = (f"is constant inside the field of view (every voxel {float(vol.min()):.3g}; "
                f"its input spans {lo:.4g}..{hi:.4g})")
    elif hi - lo < 0.01 * (HU_WINDOW[1] - HU_WINDOW[0]):
        what = (f"is one grey level: its input spans {lo:.4g}..{hi:.4g}, "
                f"under 1% of the HU window {HU_WINDOW[0]:g}..{HU_WINDOW[1]:g}")
    else:
        return None
    return f"case {case} {what} — make-cbct reads CT in HU (air -1000, water 0): convert it to HU or leave it out"


def _case_volume(hu: np.ndarray, affine: np.ndarray, geometry: CBCTGeometry, is_hu_grid: bool,
                 pose: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One case's ``(z, y, x)`` volume in [0, 1] and its affine, posed when ``pose`` is given."""
    if is_hu_grid and pose is None:
        return window(hu), affine
    if is_hu_grid:  # a grid in (z, y, x): pose it through the NIfTI-order resampler
        return resample_to_grid(np.asarray(hu).transpose(2, 1, 0), affine, geometry, pose=pose)
    return resample_to_grid(hu, affine, geometry, pose=pose)


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


# ---- views -----------------------------------------------------------------------------------------
def view_indices(total: int, num: int) -> list[int]:
    """``num`` of ``total`` stored views spread evenly from the first (the model uses the same)."""
    if not 1 <= num <= total:
        raise MedgenError(f"{num} views requested but the case stores {total} projections",
                          f"use --views between 1 and {total}")
    return [round(i * total / num) % total for i in range(num)]
