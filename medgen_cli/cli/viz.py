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
    from rich.markup import escape

    from medgen_cli.progress import stderr_console
    from medgen_cli.viz.render import render_slices

    result = render_slices(paths, out, axes, n_slices, mip, threshold, max_items, overwrite)
    console = stderr_console()
    for line in result["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(line)}")
    for line in result["notes"]:
        console.print(f"[yellow]note:[/] {escape(line)}")
    if "grid" in result:
        grid = result["grid"]
        if as_json:
            typer.echo(json.dumps({"out": str(out), "grid": grid}, indent=1))
        else:
            from rich.console import Console

            Console(soft_wrap=True, highlight=False).print(
                f"wrote {out}: grid of {grid['images']} image(s) {grid['size'][0]}x{grid['size'][1]}")
        return
    _report(result["volumes"], out, as_json)


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
