"""The shared writers of ``medgen sample`` / ``interpolate`` / ``recon``: :class:`Samples` → files.

Layout of an output folder ``OUT`` (the same for every family)::

    OUT/sample_00000.nii.gz ...     the samples, in ONE format (nifti | npy | png | points)
    OUT/manifest.json               [{"file", "seed", "label"}, ...] (label: class of a
                                    conditional model, else null; frames add "t")
    OUT/preview/grid.png            previews (grid.png, strip.png + interpolation.gif for 2D
                                    frames, compare.png for reconstructions), never beside
                                    the samples, so ``medgen eval fid OUT`` counts exactly N images

Asking for several formats (``--format nifti,points``) writes one such folder per format,
``OUT/nifti/`` and ``OUT/points/``, each with its own ``manifest.json``; previews stay in
``OUT/preview/``. Nothing is replaced without ``overwrite``: every target is checked before the
first file is written, and a folder that already holds a ``manifest.json`` is refused, as is a
non-empty folder that is not a medgen output (no sample ``manifest.json`` in it or in a format
subfolder: e.g. a data folder). With ``overwrite``, files the old sample manifest listed and the
new one does not are removed, so the folder again holds exactly the new samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.contract.options import FORMAT_SUFFIXES
from medgen_cli.contract.samples import Samples
# check_against_manifest: re-exported until metrics/fid/inputs imports it from data.sample_manifest
from medgen_cli.data.sample_manifest import MANIFEST, check_against_manifest, sample_manifest  # noqa: F401
from medgen_cli.io import atomic_path, check_writable

PREVIEW_DIR = "preview"
#: Most items shown in a preview grid (a bigger figure is unreadable; every sample is still written).
PREVIEW_CAP = 64
#: Most volumes shown in a preview grid (three slices each).
VOLUME_PREVIEW_CAP = 16


@dataclass
class Written:
    """What :func:`write_samples` wrote."""

    folders: dict[str, Path]                      # format -> sample folder
    files: list[Path] = field(default_factory=list)    # the samples (all formats)
    previews: list[Path] = field(default_factory=list)
    manifests: list[Path] = field(default_factory=list)


def sample_folders(out: Path, formats: Sequence[str]) -> dict[str, Path]:
    """``{format: folder}``: ``out`` itself for one format, ``out/<format>`` for several."""
    return {formats[0]: out} if len(formats) == 1 else {f: out / f for f in formats}


def _preview_names(samples: Samples) -> list[str]:
    if samples.preview == "strip":
        return ["strip.png"] + (["interpolation.gif"] if samples.spatial_dims == 2 else [])
    return ["compare.png" if samples.preview == "compare" else "grid.png"]


def _old_manifest(folder: Path) -> list[str]:
    """The files the sample manifest in ``folder`` lists (none for another kind of manifest)."""
    return [str(e["file"]) for e in sample_manifest(folder) or []]


def is_output_folder(folder: Path) -> bool:
    """Whether ``folder`` was written by ``medgen sample``/``interpolate``/``recon``: it (or one
    of its format subfolders) holds a sample manifest."""
    folder = Path(folder)
    return sample_manifest(folder) is not None or any(
        sample_manifest(sub) is not None for sub in folder.iterdir() if sub.is_dir())


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a file as ``out``, and a non-empty folder that is not a medgen output unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise MedgenError(f"--out {out} is a file", "give a folder for the samples")
    if overwrite or not out.is_dir():
        return
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    if entries and not is_output_folder(out):
        raise MedgenError(f"{out} is not empty ({len(entries)} entries) and holds no medgen {MANIFEST}",
                          "choose a new or empty folder for --out (or pass --overwrite to write into it anyway)")


def check_folders(out: Path, formats: Sequence[str], overwrite: bool) -> dict[str, Path]:
    """Refuse sample folders that already hold samples (a ``manifest.json``), and a non-empty
    ``out`` that is not a medgen output, unless ``overwrite``; cheap, so callers run it before
    generating anything."""
    _check_out(Path(out), overwrite)
    folders = sample_folders(Path(out), formats)
    for folder in folders.values():
        if (folder / MANIFEST).exists() and not overwrite:
            raise MedgenError(f"{folder} already holds samples ({MANIFEST})",
                              "pass --overwrite to replace them, or choose another --out")
    return folders


def _plan(samples: Samples, out: Path, formats: Sequence[str], overwrite: bool) -> dict[str, Path]:
    """Check every target before anything is written (and that the formats fit the arrays)."""
    if "points" in formats and samples.spatial_dims != 3:
        raise MedgenError("--format points needs 3D samples", "use png or npy for 2D images")
    folders = check_folders(out, formats, overwrite)
    check_writable_samples(samples, folders, overwrite)
    for name in _preview_names(samples):
        check_writable(out / PREVIEW_DIR / name, overwrite)
    return folders


def check_writable_samples(samples: Samples, folders: dict[str, Path], overwrite: bool) -> None:
    """Refuse to replace any of the files ``samples`` would write unless ``overwrite``."""
    for fmt, folder in folders.items():
        for name in samples.names:
            check_writable(folder / f"{name}{FORMAT_SUFFIXES[fmt]}", overwrite)


def _unit(arr: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Values mapped to [0, 1]: by the known range, else by the array's own min..max."""
    lo, hi = value_range if value_range is not None else (float(arr.min()), float(arr.max()))
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(arr)


def _write_png(item: np.ndarray, path: Path, value_range: tuple[float, float] | None) -> None:
    """A 2D image ``[C, H, W]`` as an 8-bit PNG (values outside the range clipped); a volume as
    its three middle slices (one figure)."""
    from medgen_cli.viz.slices import save_image_grid, save_slice_grid

    if item.ndim == 3:  # [C, H, W]
        save_image_grid(_unit(item, value_range or (0.0, 1.0))[None], path)
    else:
        save_slice_grid([item[0]], path)


def _write_item(item: np.ndarray, path: Path, fmt: str, affine: np.ndarray, threshold: float,
                value_range: tuple[float, float] | None, overwrite: bool) -> None:
    from medgen_cli.io import save_nifti

    arr = item[0] if item.shape[0] == 1 else item   # drop a single channel (NIfTI/npy hold [*spatial])
    if fmt == "nifti":
        save_nifti(arr, path, affine=affine, overwrite=overwrite)
    elif fmt == "npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(arr, dtype=np.float32))
    elif fmt == "png":
        _write_png(item, path, value_range)
    else:
        from medgen_cli.data.points import save_points, volume_to_points

        pts, vals = volume_to_points(arr, affine, threshold, return_values=True)
        save_points(pts, path, values=vals, overwrite=overwrite)


def write_manifest(folder: Path, entries: list[dict[str, Any]], overwrite: bool) -> Path:
    """``manifest.json``; with ``overwrite``, files of the previous manifest not listed now are removed."""
    path = folder / MANIFEST
    keep = {e["file"] for e in entries}
    for stale in _old_manifest(folder) if overwrite else []:
        target = folder / stale
        if stale not in keep and target.parent == folder and target.is_file():
            target.unlink()
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(entries, indent=1) + "\n")
    return path


def write_samples(samples: Samples, out: str | Path, formats: Sequence[str], overwrite: bool = False,
                  threshold: float = 0.5) -> Written:
    """Write ``samples`` into ``out`` in the layout of the module docstring.

    Args:
        samples: what a family's ``sample``/``interpolate``/``recon`` returned.
        out: the output folder.
        formats: one or more of ``nifti``, ``npy``, ``png``, ``points``.
        overwrite: replace existing outputs (and drop the stale files of an older manifest).
        threshold: voxel threshold of ``points``.

    Raises:
        MedgenError: an output exists without ``overwrite``, or a format that does not fit.
    """
    out = Path(out)
    folders = _plan(samples, out, list(formats), overwrite)
    written = Written(folders=folders)
    files, entries = write_files(samples, folders, threshold, overwrite)
    written.files += files
    written.manifests += [write_manifest(folders[fmt], entries[fmt], overwrite) for fmt in folders]
    written.previews = write_previews(samples, out / PREVIEW_DIR)
    return written


def write_files(samples: Samples, folders: dict[str, Path], threshold: float = 0.5, overwrite: bool = False
                ) -> tuple[list[Path], dict[str, list[dict[str, Any]]]]:
    """The sample files alone (no manifest, no previews): what each rank of a sharded
    ``medgen sample --nproc`` writes. Returns the files and each format's manifest entries."""
    files: list[Path] = []
    entries: dict[str, list[dict[str, Any]]] = {}
    for fmt, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        entries[fmt] = samples.manifest()
        for item, name, entry in zip(samples.arrays, samples.names, entries[fmt]):
            path = folder / f"{name}{FORMAT_SUFFIXES[fmt]}"
            _write_item(item, path, fmt, samples.affine, threshold, samples.value_range, overwrite)
            entry["file"] = path.name
            files.append(path)
    return files, entries


def write_file(samples: Samples, path: str | Path, overwrite: bool = False) -> Path:
    """The one item of ``samples`` as one NIfTI file at ``path`` (``medgen recon --out FILE``),
    written under a temporary name and renamed; an existing file is refused unless ``overwrite``."""
    path = check_writable(path, overwrite)
    if len(samples.arrays) != 1:
        raise MedgenError(f"one output file holds one volume, not {len(samples.arrays)}")
    _write_item(samples.arrays[0], path, "nifti", samples.affine, 0.5, samples.value_range, overwrite)
    return path


def preview_count(spatial_dims: int) -> int:
    """How many samples a ``grid.png`` shows (every sample is still written)."""
    return PREVIEW_CAP if spatial_dims == 2 else VOLUME_PREVIEW_CAP


def write_previews(samples: Samples, folder: Path) -> list[Path]:
    """``grid.png`` (samples), ``strip.png`` (+ ``interpolation.gif`` in 2D) or ``compare.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = samples.arrays
    if samples.preview == "strip":
        return _strip(samples, folder)
    if samples.preview == "compare" and samples.references is not None:
        from medgen_cli.viz.slices import save_comparison_grid

        # input, output (titled with its PSNR) and the |error| map of the first 8 pairs
        return [save_comparison_grid(list(samples.references[:8]), list(arrays[:8]), folder / "compare.png",
                                     names=list(samples.names[:8]))]
    shown = arrays[:PREVIEW_CAP]
    if samples.spatial_dims == 2:
        from medgen_cli.viz.slices import save_image_grid

        unit = np.stack([_unit(a, samples.value_range or (0.0, 1.0)) for a in shown])
        return [save_image_grid(unit, folder / "grid.png", min_tile=128)]  # 16x16 samples: 8x zoom
    titles = [_title(s, lab) for s, lab in zip(samples.seeds, samples.labels)][:VOLUME_PREVIEW_CAP]
    return [_volume_grid(list(arrays[:VOLUME_PREVIEW_CAP]), folder / "grid.png", titles)]


def _title(seed: int | None, label: int | None) -> str:
    parts = ([f"seed {seed}"] if seed is not None else []) + ([f"class {label}"] if label is not None else [])
    return ", ".join(parts) or "sample"


def _volume_grid(items: list[np.ndarray], path: Path, titles: list[str]) -> Path:
    from medgen_cli.viz.slices import save_slice_grid

    return save_slice_grid([np.asarray(v)[0] if np.asarray(v).shape[0] == 1 else np.asarray(v) for v in items],
                           path, titles=titles)


def _strip(samples: Samples, folder: Path) -> list[Path]:
    """Frames side by side on one grey scale, each zoomed like the sample grids and labelled with
    its ``t`` (volumes: the middle axial slice, first axis horizontal, origin lower left); 2D
    frames also as a looping GIF with the same zoom and labels."""
    from medgen_cli.viz.strip import save_gif, save_strip, t_labels

    frames, value_range = samples.arrays, samples.value_range
    labels = t_labels([e.get("t") for e in samples.extra] if samples.extra else [None] * len(frames))
    if frames.ndim == 5:  # [K, 1, X, Y, Z] → middle axial slices
        tiles = frames[:, 0, :, :, frames.shape[-1] // 2].transpose(0, 2, 1)[:, ::-1]
        return [save_strip(_unit(tiles, value_range), labels, folder / "strip.png")]
    unit = _unit(frames, value_range or (0.0, 1.0))
    return [save_strip(unit, labels, folder / "strip.png"), save_gif(unit, labels, folder / "interpolation.gif")]
