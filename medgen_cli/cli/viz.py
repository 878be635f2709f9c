"""``medgen viz slices``: slice grids / MIPs of volumes (NIfTI, .npy) and grids of image folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer

from medgen_cli.cli.groups import viz_app


@viz_app.command("slices")
def slices(
    paths: List[Path] = typer.Argument(..., help="NIfTI (.nii/.nii.gz) or .npy volumes, folders of volumes, or ONE folder of images."),
    out: Path = typer.Option(..., "--out", "-o", help="Output PNG."),
    axes: str = typer.Option("axial,coronal,sagittal", "--axes", help="Planes to show, comma-separated: axial (fixes z), coronal (y), sagittal (x)."),
    n_slices: int = typer.Option(1, "--n-slices", "-n", min=1, help="Evenly spaced slices per plane (1 = the middle slice)."),
    mip: bool = typer.Option(False, "--mip", help="Add a maximum intensity projection per plane."),
    threshold: float = typer.Option(0.0, "--threshold", help="Occupancy in the stats = fraction of voxels above this."),
    max_items: int = typer.Option(64, "--max", min=1, help="At most this many volumes (rows) or images (tiles) from folders."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-volume stats as JSON instead of a table."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing PNG."),
) -> None:
    """Write a PNG: one row per volume (side by side: slices per plane, optional MIPs), or an image grid.

    Also prints per-volume stats (shape, spacing, min/max/mean, occupancy) as a table or --json.
    """
    from medgen_cli.io import check_writable
    from medgen_cli.viz.loading import collect_inputs

    check_writable(out, overwrite)
    kind, items = collect_inputs(paths, max_items)
    if kind == "images":
        _image_grid(items, out, as_json)
        return
    from medgen_cli.viz.slices import save_slice_grid
    from medgen_cli.viz.stats import volume_stats

    planes = tuple(a.strip().lower() for a in axes.split(",") if a.strip())
    vols = [v for _p, v, _a in items]
    titles = [_short(p) for p, _v, _a in items]
    save_slice_grid(vols, out, axes=planes, n_slices=n_slices, mip=mip, titles=titles)
    _cap_note(len(vols), len(planes) * (n_slices + int(mip)) if any(v.ndim == 3 for v in vols) else 1)
    stats = [volume_stats(str(p), v, a, threshold) for p, v, a in items]
    _report(stats, out, as_json)


def _cap_note(n_rows: int, n_cols: int) -> None:
    """Say when the PNG size cap shrank the panels or dropped rows."""
    from rich.console import Console

    from medgen_cli.viz.slices import MAX_PIXELS, fit_panels

    inches, shown = fit_panels(n_rows, n_cols)
    if shown < n_rows:
        Console(stderr=True).print(f"[yellow]note:[/] showing the first {shown} of {n_rows} volumes: the PNG is capped "
                                   f"at {MAX_PIXELS} px per side (pass fewer files or --max {shown})", highlight=False)
    elif inches < 2.0:
        Console(stderr=True).print(f"[yellow]note:[/] {n_rows} volumes drawn at {round(inches * 100)} px per panel to keep "
                                   f"the PNG within {MAX_PIXELS} px per side", highlight=False)


def _short(p: Path) -> str:
    name = p.name
    return name if len(name) <= 28 else name[:25] + "..."


def _image_grid(files: list, out: Path, as_json: bool) -> None:
    import numpy as np

    from medgen_cli.data.images import load_image
    from medgen_cli.viz.slices import save_image_grid

    first = load_image(files[0], channels=3)
    channels = 1 if all(np.allclose(first[..., 0], first[..., c]) for c in (1, 2)) else 3  # judged on the first
    h, w = first.shape[:2]
    size = None if _same_size(files, h, w) else max(h, w)  # mixed sizes: all resized to one square
    imgs = np.stack([load_image(f, channels=channels, resolution=size) for f in files])
    save_image_grid(imgs, out)
    stats = {"images": len(files), "size": [int(imgs.shape[1]), int(imgs.shape[2])], "channels": int(imgs.shape[-1]),
             "min": float(imgs.min()), "max": float(imgs.max()), "mean": float(imgs.mean())}
    if as_json:
        typer.echo(json.dumps({"out": str(out), "grid": stats}, indent=1))
    else:
        from rich.console import Console

        Console().print(f"wrote {out}: grid of {len(files)} image(s) {stats['size'][0]}x{stats['size'][1]}")


def _same_size(files: list, h: int, w: int) -> bool:
    from PIL import Image

    for f in files:
        with Image.open(f) as im:
            if im.size != (w, h):
                return False
    return True


def _report(stats: list[dict], out: Path, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"out": str(out), "volumes": stats}, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"viz slices → {out}", title_justify="left")
    for c in ("volume", "shape", "spacing", "min", "max", "mean", "occupancy"):
        table.add_column(c, justify="left" if c in ("volume", "shape", "spacing") else "right")

    def fmt(x: object) -> str:
        return "-" if x is None else f"{x:.4g}"

    for s in stats:
        table.add_row(Path(s["path"]).name, "×".join(map(str, s["shape"])), "×".join(f"{v:.3g}" for v in s["spacing"]),
                      fmt(s["min"]), fmt(s["max"]), fmt(s["mean"]), f"{100 * s['occupancy']:.2f}%")
    Console().print(table)
