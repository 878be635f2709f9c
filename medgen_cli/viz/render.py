"""``medgen viz slices`` as a library call: a PNG of slice grids / MIPs of volumes (one row each)
or a grid of an image folder, plus per-input statistics and a note when the size cap applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def render_slices(paths: Sequence[Path], out: Path, axes: str = "axial,coronal,sagittal", n_slices: int = 1,
                  mip: bool = False, threshold: float = 0.0, max_items: int = 64,
                  overwrite: bool = False) -> dict[str, Any]:
    """Write ``out`` from volumes (NIfTI, .npy, folders of them) or one folder of images.

    Returns:
        ``{"out", "volumes": [per-volume stats]}`` or ``{"out", "grid": image-grid stats}``, and
        ``"notes"``: sentences for inputs left out (``max_items``, the PNG size cap) or panels
        shrunk, and ``"warnings"``: volumes with NaN/inf voxels (drawn as 0), one per file.

    Raises:
        MedgenError: ``out`` exists without ``overwrite``, or unreadable / no inputs.
    """
    from medgen_cli.io import check_writable
    from medgen_cli.viz.loading import collect_inputs

    check_writable(out, overwrite)
    kind, items, found = collect_inputs(list(paths), max_items)
    notes = [_left_out(kind, len(items), found)] if found > len(items) else []
    if kind == "images":
        return {"out": str(out), "grid": _image_grid(items, out), "notes": notes, "warnings": []}
    from medgen_cli.viz.slices import save_slice_grid
    from medgen_cli.viz.stats import volume_stats

    planes = tuple(a.strip().lower() for a in axes.split(",") if a.strip())
    vols = [v for _p, v, _a in items]
    titles = [_short(p) for p, _v, _a in items]
    save_slice_grid(vols, out, axes=planes, n_slices=n_slices, mip=mip, titles=titles)
    cap = _cap_note(len(vols), len(planes) * (n_slices + int(mip)) if any(v.ndim == 3 for v in vols) else 1)
    stats = [volume_stats(str(p), v, a, threshold) for p, v, a in items]
    warnings = [f"{s['path']} has {s['nonfinite']} non-finite voxel(s) (NaN/inf), drawn as 0 and left out of "
                "its statistics" for s in stats if s["nonfinite"]]
    return {"out": str(out), "volumes": stats, "notes": notes + ([cap] if cap else []), "warnings": warnings}


def _left_out(kind: str, shown: int, found: int) -> str:
    what = "images" if kind == "images" else "volumes"
    return f"showing the first {shown} of {found} {what}: {found - shown} left out (--max {shown}; raise it to show more)"


def _cap_note(n_rows: int, n_cols: int) -> str | None:
    """Say when the PNG size cap shrank the panels or dropped rows."""
    from medgen_cli.viz.slices import MAX_PIXELS, fit_panels

    inches, shown = fit_panels(n_rows, n_cols)
    if shown < n_rows:
        return (f"showing the first {shown} of {n_rows} volumes: the PNG is capped at {MAX_PIXELS} px per side "
                f"(pass fewer files or --max {shown})")
    if inches < 2.0:
        return (f"{n_rows} volumes drawn at {round(inches * 100)} px per panel to keep the PNG within "
                f"{MAX_PIXELS} px per side")
    return None


def _short(p: Path) -> str:
    name = p.name
    return name if len(name) <= 28 else name[:25] + "..."


def _image_grid(files: list[Path], out: Path) -> dict[str, Any]:
    from medgen_cli.data.images import load_image
    from medgen_cli.viz.slices import save_image_grid

    first = load_image(files[0], channels=3)
    channels = 1 if all(np.allclose(first[..., 0], first[..., c]) for c in (1, 2)) else 3  # judged on the first
    h, w = first.shape[:2]
    size = None if _same_size(files, h, w) else max(h, w)  # mixed sizes: all resized to one square
    imgs = np.stack([load_image(f, channels=channels, resolution=size) for f in files])
    save_image_grid(imgs, out)
    return {"images": len(files), "size": [int(imgs.shape[1]), int(imgs.shape[2])], "channels": int(imgs.shape[-1]),
            "min": float(imgs.min()), "max": float(imgs.max()), "mean": float(imgs.mean())}


def _same_size(files: list[Path], h: int, w: int) -> bool:
    from PIL import Image

    for f in files:
        with Image.open(f) as im:
            if im.size != (w, h):
                return False
    return True
