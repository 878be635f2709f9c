"""Slice grids of volumes and grids of 2D images, written as PNG atomically.

Volumes are indexed ``[x, y, z]`` as stored in NIfTI (``[i, j, k]``). Planes: ``sagittal`` fixes
``x`` (axis 0), ``coronal`` fixes ``y`` (axis 1), ``axial`` fixes ``z`` (axis 2). A slice is shown
with its first remaining axis horizontal and origin at the lower left (radiological-style
orientation is not attempted). A MIP is the maximum intensity projection along the plane's axis.
Each volume is shown with its own min..max range, drawn as a colour bar at the end of its row;
a row's title stands once above its first panel, and every panel is labelled with its plane. 2D volumes are one panel per view.

Figure size: each panel is ``panel_inches`` square at ``dpi`` plus half a panel for the colour
bars, so a grid of R rows and C columns is ``(C + 0.5) * panel_inches * dpi`` by
``R * panel_inches * dpi`` pixels. Large grids are kept within ``max_pixels`` per side: panels
shrink down to ``MIN_PANEL_PX``, then only the first rows are drawn (:func:`fit_panels` says
how many, so callers can print a note).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path

PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
CBAR = 0.5  # colour-bar column width, in panels
MAX_PIXELS = 4096
MIN_PANEL_PX = 96


def fit_panels(n_rows: int, n_cols: int, panel_inches: float = 2.0, dpi: int = 100,
               max_pixels: int = MAX_PIXELS) -> tuple[float, int]:
    """``(panel_inches, rows_shown)`` that keep a slice grid within ``max_pixels`` per side:
    panels shrink first (not below :data:`MIN_PANEL_PX`), then rows are dropped."""
    longest = max(n_rows, n_cols + CBAR)
    inches = min(panel_inches, max(max_pixels / (longest * dpi), MIN_PANEL_PX / dpi))  # never grows
    rows = max(1, min(n_rows, int(max_pixels // (inches * dpi))))
    return inches, rows


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


def _check_grid_request(volumes: list[np.ndarray], axes: Sequence[str], n_slices: int,
                        titles: Sequence[str] | None) -> None:
    if not volumes:
        raise MedgenError("no volumes to show")
    bad = [a for a in axes if a not in PLANE_AXIS]
    if bad or not axes:
        raise MedgenError(f"unknown plane(s) {bad or axes}", "use axial, coronal and/or sagittal")
    if n_slices < 1:
        raise MedgenError(f"n_slices must be >= 1, not {n_slices}")
    if titles is not None and len(titles) != len(volumes):
        raise MedgenError(f"{len(titles)} titles for {len(volumes)} volumes")


def save_slice_grid(volumes: list[np.ndarray], out_png: str | Path, axes: Sequence[str] = ("axial", "coronal", "sagittal"),
                    n_slices: int = 1, mip: bool = False, titles: Sequence[str] | None = None,
                    panel_inches: float = 2.0, dpi: int = 100, max_pixels: int = MAX_PIXELS,
                    cmaps: Sequence[str] | None = None, ranges: Sequence[tuple[float, float] | None] | None = None) -> Path:
    """One row per volume: ``n_slices`` slices per plane (and a MIP per plane when ``mip``),
    and the row's value range as a colour bar.

    Args:
        volumes: 3D (or 2D) arrays; a leading singleton channel is dropped.
        out_png: output PNG (written atomically, replaced if present: callers check overwrite).
        axes: planes among ``axial``, ``coronal``, ``sagittal``.
        n_slices: evenly spaced slices per plane (1 = the middle slice).
        mip: add a maximum intensity projection per plane.
        titles: one row title per volume (shown once, above the row's first panel).
        panel_inches, dpi: panel size (see the module docstring for the PNG size).
        max_pixels: cap on either side of the PNG (see :func:`fit_panels`).
        cmaps: a matplotlib colour map per row (default grey).
        ranges: a fixed ``(vmin, vmax)`` per row (default: the volume's own min..max).

    Returns:
        The PNG path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_grid_request(volumes, axes, n_slices, titles)
    rows = [_panels_for(_as_volume(v), axes, n_slices, mip) for v in volumes]
    ncols = max(len(r) for r in rows)
    panel_inches, shown = fit_panels(len(rows), ncols, panel_inches, dpi, max_pixels)
    rows = rows[:shown]
    fig = Figure(figsize=((ncols + CBAR) * panel_inches, len(rows) * panel_inches), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(rows), ncols + 1, width_ratios=[1.0] * ncols + [CBAR], left=0.01, right=0.97,
                            bottom=0.01, top=1 - 0.14 / len(rows), wspace=0.05, hspace=0.3)
    font = max(5.0, min(7.0, 3.5 * panel_inches))
    for r, (vol, panels) in enumerate(zip(volumes, rows)):
        vmin, vmax = (ranges[r] if ranges is not None and ranges[r] is not None
                      else (float(np.nanmin(_as_volume(vol))), float(np.nanmax(_as_volume(vol)))))
        vmax = vmax if vmax > vmin else vmin + 1
        image = None
        for c in range(ncols):
            ax = fig.add_subplot(grid[r, c])
            ax.set_axis_off()
            if c >= len(panels):
                continue
            label, img = panels[c]
            image = ax.imshow(img.T, cmap=cmaps[r] if cmaps is not None else "gray", origin="lower", vmin=vmin,
                              vmax=vmax, interpolation="nearest", aspect="equal")
            ax.set_title(label, fontsize=font, pad=2)
            if titles is not None and c == 0:
                # The row's title once, left-aligned a line above the panel labels: repeated over
                # every panel, a long title ran into its neighbours' (compare.png).
                ax.annotate(titles[r], xy=(0, 1), xycoords="axes fraction", xytext=(0, 3 + 1.3 * font),
                            textcoords="offset points", ha="left", va="bottom", fontsize=font)
        cax = fig.add_subplot(grid[r, ncols])
        cax.set_box_aspect(4)
        bar = fig.colorbar(image, cax=cax, ticks=[vmin, vmax])
        bar.ax.tick_params(labelsize=font, length=2, pad=1)
        bar.ax.set_yticklabels([f"{vmin:.3g}", f"{vmax:.3g}"])
    return _save_figure(fig, out_png, dpi)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB with the reference's value range as the peak (inf for identical arrays)."""
    ref, out = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    mse = float(np.mean((ref - out) ** 2))
    peak = float(ref.max() - ref.min()) or 1.0
    return float("inf") if mse == 0 else 10.0 * float(np.log10(peak * peak / mse))


def save_comparison_grid(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], out_png: str | Path,
                         names: Sequence[str] | None = None, **kw: object) -> Path:
    """Three rows per pair: the input, the output (titled with its PSNR) and the absolute error
    map (its own colour bar), with input and output on one grey scale so they compare directly."""
    vols, titles, cmaps, ranges = [], [], [], []
    for i, (a, b) in enumerate(zip(inputs, outputs)):
        a, b = _as_volume(a), _as_volume(b)
        if a.shape != b.shape:
            raise MedgenError(f"cannot compare shapes {a.shape} and {b.shape}")
        name = names[i] if names is not None else f"#{i}"
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        err = np.abs(b - a)
        vols += [a, b, err]
        titles += [f"{name}: input", f"{name}: output, PSNR {psnr(a, b):.2f} dB", f"{name}: |error| (max {err.max():.3g})"]
        cmaps += ["gray", "gray", "magma"]
        ranges += [(lo, hi), (lo, hi), (0.0, float(err.max()) or 1.0)]
    return save_slice_grid(vols, out_png, titles=titles, cmaps=cmaps, ranges=ranges, **kw)  # type: ignore[arg-type]


def _save_figure(fig: "object", out_png: str | Path, dpi: int) -> Path:
    out = Path(out_png)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return out


def save_image_grid(images: np.ndarray, out_png: str | Path, ncols: int | None = None, pad: int = 2,
                    min_tile: int = 0) -> Path:
    """Tile images into one PNG (Pillow; no resampling except an integer nearest-neighbour zoom).

    Args:
        images: ``[N, H, W]`` or ``[N, H, W, C]`` (C = 1 or 3) in [0, 1] (values are clipped);
            a channel-first ``[N, C, H, W]`` array with C in (1, 3) is accepted too.
        out_png: output PNG (atomic write).
        ncols: images per row (default ``ceil(sqrt(N))``).
        pad: black pixels between tiles.
        min_tile: zoom small images by the smallest integer factor ``k`` that makes each tile at
            least this many pixels on its longer side (e.g. 16x16 GAN samples at 128: k = 8), so
            a grid of tiny images is readable; 0 keeps the pixels as they are.

    Returns:
        The PNG path; its size is ``ncols*W*k + (ncols-1)*pad`` by ``nrows*H*k + (nrows-1)*pad``.
    """
    from PIL import Image

    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or arr.shape[0] < 1:
        raise MedgenError(f"expected images [N, H, W] or [N, H, W, C], got shape {np.shape(images)}")
    k = max(1, -(-int(min_tile) // max(arr.shape[1], arr.shape[2]))) if min_tile else 1
    if k > 1:
        arr = arr.repeat(k, axis=1).repeat(k, axis=2)
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
