"""Making a CBCT dataset (``medgen data make-cbct``): CT volumes (a NIfTI folder or synthetic
phantoms) → posed, windowed grids → one case file per case (:mod:`medgen_cli.data.cbct.io`) in
``DIR/{train,val,test}/``, resumable.

``DIR/manifest.json`` records the geometry, window, seed, poses and split so a resumed run cannot
mix settings; each case file stores the hash of those settings so stale files are rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from medgen_cli.data.cbct.geometry import CBCTGeometry, load_geometry
from medgen_cli.data.cbct.grids import grid_affine, resample_to_grid
from medgen_cli.data.cbct.io import simulate, write_case
from medgen_cli.data.cbct.phantoms import HU_WINDOW, phantom_hu, window
from medgen_cli.data.cbct.poses import PoseSpec, draw_pose, parse_scale_range, posed_names
from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path

SPLITS = ("train", "val", "test")


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


def _manifest(names: list[str], geometry: CBCTGeometry, fractions: tuple[float, float, float], seed: int,
              poses: PoseSpec) -> dict[str, Any]:
    """The settings of a dataset and its split ``{case: split}`` (all poses of a volume share one)."""
    if len(set(names)) != len(names):
        raise MedgenError("two input volumes have the same case name", "rename one of them")
    by_source = assign_splits(names, fractions, seed)
    split = {case: by_source[name] for name in names for case in posed_names(name, poses)}
    manifest: dict[str, Any] = {"geometry": geometry.model_dump(), "hu_window": list(HU_WINDOW), "seed": seed,
                                "fractions": list(fractions), "cases": sorted(split), "split": split}
    if poses.copies:
        manifest["poses"] = poses.to_dict()
    return manifest


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
    manifest = _manifest([name for name, _ in sources], geometry, fractions, seed, poses)
    split: dict[str, str] = manifest["split"]
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


def build_cbct_dataset(out: Path, volumes_dir: Path | None = None, synthetic: int = 0, geometry: Path | None = None,
                       size: int | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                       allow_truncation: bool = False, overwrite: bool = False, poses: int = 0,
                       pose_rotation: float = 15.0, pose_scale: str = "0.9,1.1", pose_shift: float = 0.05,
                       pose_flip: str = "x",
                       track: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None) -> dict[str, Any]:
    """Simulated cone-beam case files for the CT volumes of ``volumes_dir`` (or ``synthetic`` phantoms).

    Returns:
        :func:`make_cbct`'s summary plus ``counts`` per split, ``volume_size``
        and ``num_angles`` of the geometry used.

    Raises:
        MedgenError: both or neither of ``volumes_dir`` / ``synthetic``, a bad geometry or pose spec.
    """
    geo = load_geometry(str(geometry) if geometry else None)
    if size is not None:
        geo = geo.scaled(size)
    if (volumes_dir is None) == (synthetic <= 0):
        raise MedgenError("give either VOLUMES_DIR or --synthetic N",
                          "e.g. medgen data make-cbct --synthetic 20 --out data/cbct --size 32")
    sources = synthetic_sources(synthetic, geo, seed) if synthetic > 0 else nifti_sources(volumes_dir)
    spec = PoseSpec(poses, pose_rotation, parse_scale_range(pose_scale), pose_shift,
                    "" if pose_flip == "none" else pose_flip)
    summary = make_cbct(sources, out, geo, (1 - val_fraction - test_fraction, val_fraction, test_fraction),
                             seed=seed, overwrite=overwrite, allow_truncation=allow_truncation,
                             is_hu_grid=synthetic > 0, track=track, poses=spec)
    counts = {s: sum(1 for v in summary["split"].values() if v == s) for s in SPLITS}
    return {**summary, "counts": counts, "volume_size": geo.volume_size, "num_angles": geo.num_angles}
