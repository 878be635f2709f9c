"""Slice grids of volumes and grids of 2D images, written as PNG atomically.

Volumes are indexed ``[x, y, z]`` as stored in NIfTI (``[i, j, k]``). Planes: ``sagittal`` fixes
``x`` (axis 0), ``coronal`` fixes ``y`` (axis 1), ``axial`` fixes ``z`` (axis 2). A slice is shown
with its first remaining axis horizontal and origin at the lower left (radiological-style
orientation is not attempted). A MIP is the maximum intensity projection along the plane's axis.
Each volume is shown with its own min..max grey range. 2D volumes are shown as one panel per view.

Figure size: each panel is ``panel_inches`` square at ``dpi``, so a grid of R rows and C columns
is exactly ``C * panel_inches * dpi`` by ``R * panel_inches * dpi`` pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path

PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def _panels_for(vol: np.ndarray, axes: Sequence[str], n_slices: int, mip: bool) -> list[tuple[str, np.ndarray]]:
    """(label, 2D image) panels for one volume, in column order."""
    if vol.ndim == 2:
        return [("image", vol)]
    panels: list[tuple[str, np.ndarray]] = []
    for plane in axes:
        ax = PLANE_AXIS[plane]
        n = vol.shape[ax]
        # n evenly spaced interior slices; n_slices=1 is the middle slice.
        positions = [int(round((j + 1) * n / (n_slices + 1))) for j in range(n_slices)]
        for pos in positions:
            pos = min(max(pos, 0), n - 1)
            panels.append((f"{plane} {pos}", np.take(vol, pos, axis=ax)))
        if mip:
            panels.append((f"{plane} MIP", vol.max(axis=ax)))
    return panels


def _as_volume(v: np.ndarray) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    while a.ndim > 3 and a.shape[0] == 1:  # drop leading channel/batch singletons
        a = a[0]
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise MedgenError(f"cannot show an array of shape {np.shape(v)}", "expected a 2D or 3D volume")
    return np.nan_to_num(a)


def save_slice_grid(volumes: list[np.ndarray], out_png: str | Path, axes: Sequence[str] = ("axial", "coronal", "sagittal"),
                    n_slices: int = 1, mip: bool = False, titles: Sequence[str] | None = None,
                    panel_inches: float = 2.0, dpi: int = 100) -> Path:
    """One row per volume: ``n_slices`` slices per plane (and a MIP per plane when ``mip``).

    Args:
        volumes: 3D (or 2D) arrays; a leading singleton channel is dropped.
        out_png: output PNG (written atomically, replaced if present: callers check overwrite).
        axes: planes among ``axial``, ``coronal``, ``sagittal``.
        n_slices: evenly spaced slices per plane (1 = the middle slice).
        mip: add a maximum intensity projection per plane.
        titles: one row title per volume.
        panel_inches, dpi: panel size; the PNG is exactly cols*panel_inches*dpi wide.

    Returns:
        The PNG path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not volumes:
        raise MedgenError("no volumes to show")
    bad = [a for a in axes if a not in PLANE_AXIS]
    if bad or not axes:
        raise MedgenError(f"unknown plane(s) {bad or axes}", "use axial, coronal and/or sagittal")
    if n_slices < 1:
        raise MedgenError(f"n_slices must be >= 1, not {n_slices}")
    if titles is not None and len(titles) != len(volumes):
        raise MedgenError(f"{len(titles)} titles for {len(volumes)} volumes")
    rows = [_panels_for(_as_volume(v), axes, n_slices, mip) for v in volumes]
    ncols = max(len(r) for r in rows)
    fig = Figure(figsize=(ncols * panel_inches, len(rows) * panel_inches), dpi=dpi)
    FigureCanvasAgg(fig)
    for r, (vol, panels) in enumerate(zip(volumes, rows)):
        vmin, vmax = float(np.nanmin(vol)), float(np.nanmax(vol))
        for c in range(ncols):
            ax = fig.add_subplot(len(rows), ncols, r * ncols + c + 1)
            ax.set_axis_off()
            if c >= len(panels):
                continue
            label, img = panels[c]
            ax.imshow(img.T, cmap="gray", origin="lower", vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1,
                      interpolation="nearest", aspect="equal")
            head = f"{titles[r]}: {label}" if titles is not None and c == 0 else label
            ax.set_title(head, fontsize=7)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.05, hspace=0.2)
    return _save_figure(fig, out_png, dpi)


def _save_figure(fig: "object", out_png: str | Path, dpi: int) -> Path:
    out = Path(out_png)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return out


def save_image_grid(images: np.ndarray, out_png: str | Path, ncols: int | None = None, pad: int = 2) -> Path:
    """Tile images into one PNG (Pillow, pixel-exact: no resampling).

    Args:
        images: ``[N, H, W]`` or ``[N, H, W, C]`` (C = 1 or 3) in [0, 1] (values are clipped);
            a channel-first ``[N, C, H, W]`` array with C in (1, 3) is accepted too.
        out_png: output PNG (atomic write).
        ncols: images per row (default ``ceil(sqrt(N))``).
        pad: black pixels between tiles.

    Returns:
        The PNG path; its size is ``ncols*W + (ncols-1)*pad`` by ``nrows*H + (nrows-1)*pad``.
    """
    from PIL import Image

    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or arr.shape[0] < 1:
        raise MedgenError(f"expected images [N, H, W] or [N, H, W, C], got shape {np.shape(images)}")
    n, h, w, c = arr.shape
    ncols = int(ncols or int(np.ceil(np.sqrt(n))))
    nrows = int(np.ceil(n / ncols))
    grid = np.zeros((nrows * h + (nrows - 1) * pad, ncols * w + (ncols - 1) * pad, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[r * (h + pad): r * (h + pad) + h, col * (w + pad): col * (w + pad) + w] = arr[i]
    u8 = (np.clip(np.nan_to_num(grid), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    img = Image.fromarray(u8[..., 0] if c == 1 else u8, mode="L" if c == 1 else "RGB")
    out = Path(out_png)
    with atomic_path(out, suffix=".png") as tmp:
        img.save(tmp, format="PNG")
    return out
