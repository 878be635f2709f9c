"""``medgen data``: convert-h5, inspect, to-points, synth-h5 (point clouds ↔ NIfTI volumes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from medgen_cli.cli.groups import data_app

_METHOD_HELP = (
    "occupancy: 1 where at least one point falls in the voxel, else 0 (values ignored). "
    "density: sum of point weights (1, or the per-point value with --weights) in the voxel, divided by the "
    "volume's maximum so the densest voxel is 1 (not divided by the point count). "
    "gaussian: each point adds a unit-PEAK isotropic Gaussian (sigma = --sigma voxels, mass (2 pi)^1.5 sigma^3) "
    "evaluated at voxel centres within ceil(3 sigma) voxels, then the volume is divided by its maximum (peak 1)."
)


@data_app.command("convert-h5")
def convert_h5(
    inputs: List[Path] = typer.Argument(..., help="One or more HDF5 point-cloud files."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: OUT/train/*.nii.gz, OUT/val/*.nii.gz, OUT/manifest.json."),
    key: Optional[str] = typer.Option(None, "--key", help="Dataset or group holding the clouds (default: auto-detect; see `medgen data inspect`)."),
    label_key: Optional[str] = typer.Option(None, "--label-key", help="Dataset of per-cloud labels (default: 'label'/'labels' next to the clouds)."),
    resolution: str = typer.Option("64", "--resolution", "-r", help="Grid size: 64 or X,Y,Z."),
    method: str = typer.Option("occupancy", "--method", "-m", help=_METHOD_HELP),
    sigma: float = typer.Option(1.0, "--sigma", help="Gaussian standard deviation in voxels (--method gaussian)."),
    weights: bool = typer.Option(False, "--weights", help="Use per-point values (4th column or a 'values' dataset) as weights for density/gaussian."),
    normalize: str = typer.Option("sample", "--normalize", help="sample: fit each cloud's bounding box into the grid; dataset: one box for all clouds; "
                                  "none: points are already voxel coordinates (in units of --spacing). Fits keep the aspect ratio and leave --margin empty."),
    margin: float = typer.Option(0.05, "--margin", help="Fraction of the grid left empty on each side of the longest axis (sample/dataset)."),
    bounds: Optional[str] = typer.Option(None, "--bounds", help="Explicit box xmin,ymin,zmin,xmax,ymax,zmax fitted into the whole grid (overrides --normalize); points outside are dropped and counted."),
    spacing: Optional[str] = typer.Option(None, "--spacing", help="Voxel size in mm (the points' units), S or SX,SY,SZ: fixes the voxel size instead of fitting it; the grid stays centred on the box."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Fraction of clouds written to OUT/val (seeded, deterministic)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/val split."),
    strict: bool = typer.Option(False, "--strict", help="Fail on NaN/Inf points instead of dropping and counting them."),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Worker processes: 0 = auto (min(4, CPU count)), 1 = in this process. The output does not depend on it."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted conversion into OUT (same options), skipping finished samples."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous conversion in OUT."),
) -> None:
    """Voxelize H5 point clouds into float32 .nii.gz volumes with a train/val split and a manifest.

    The NIfTI affine maps voxel indices to the voxel centres in the points' own coordinates, so `medgen data to-points` brings the volume back to the original frame (within half a voxel).
    """
    from rich.console import Console

    from medgen_cli.data.convert import ConvertOptions, run_convert
    from medgen_cli.data.convert_report import summary_table
    from medgen_cli.data.voxelize import parse_bounds, parse_triple

    import os

    box = parse_bounds(bounds)
    workers = workers or min(4, os.cpu_count() or 1)
    opts = ConvertOptions(
        inputs=[str(p) for p in inputs], out=str(out), key=key, label_key=label_key,
        resolution=parse_triple(resolution, "--resolution", integer=True), method=method, sigma=sigma, weights=weights,
        normalize=normalize, margin=margin, bounds=None if box is None else [box[0].tolist(), box[1].tolist()],
        spacing=parse_triple(spacing, "--spacing"), val_fraction=val_fraction, seed=seed, strict=strict,
        workers=workers, resume=resume, overwrite=overwrite,
    )
    try:
        summary = run_convert(opts, progress=True)
    except KeyboardInterrupt:
        _print_resume_hint(out)
        raise SystemExit(130) from None
    Console().print(summary_table(summary))
    if summary.skipped_samples:
        shown = "; ".join(f"{Path(s['source']).name}[{s['index']}]: {s['reason']}" for s in summary.skipped_samples[:10])
        more = f" (+{len(summary.skipped_samples) - 10} more)" if len(summary.skipped_samples) > 10 else ""
        Console(stderr=True).print(f"[yellow]skipped {len(summary.skipped_samples)} cloud(s):[/] {shown}{more}")


def _print_resume_hint(out: Path) -> None:
    """After Ctrl-C: finished volumes are kept; the same command with --resume completes the rest."""
    import shlex
    import sys

    from rich.console import Console

    args = [a for a in sys.argv[1:] if a not in ("--overwrite", "--resume")]
    cmd = " ".join(["medgen", *map(shlex.quote, args), "--resume"])
    Console(stderr=True).print(f"[yellow]interrupted; the volumes finished so far are kept in {out}.[/] "
                               f"Resume with: {cmd}", highlight=False, soft_wrap=True)


@data_app.command("inspect")
def inspect(
    file: Path = typer.Argument(..., help="An HDF5 point-cloud file."),
    key: Optional[str] = typer.Option(None, "--key", help="Dataset or group to read (as for convert-h5)."),
    label_key: Optional[str] = typer.Option(None, "--label-key", help="Label dataset (as for convert-h5)."),
    as_json: bool = typer.Option(False, "--json", help="Print the tree and the plan as JSON."),
) -> None:
    """Print the file's tree (keys, shapes, dtypes) and what convert-h5 would do with it."""
    from rich.console import Console
    from rich.table import Table

    from medgen_cli.data.h5io import inspect_h5

    info = inspect_h5(file, key, label_key)
    tree, plan = info["tree"], info["plan"]
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    table = Table(title=str(file), title_justify="left")
    for c in ("path", "kind", "shape", "dtype", "attrs"):
        table.add_column(c)
    for r in tree:
        table.add_row(r["path"], r["kind"], "" if r["shape"] is None else str(tuple(r["shape"])), r["dtype"] or "",
                      ", ".join(r["attrs"]))
    console = Console()
    console.print(table)
    console.print(f"[bold]convert-h5 would read:[/] {plan}")
    if info["layout"] is not None:
        labels = ", labels into manifest.json" if info["label_key"] else ""
        console.print(f"[bold]with the defaults it would write:[/] {info['n']} float32 .nii.gz volume(s) of 64³, "
                      f"occupancy, each cloud fitted into the grid with a 5% margin, ~10% to val/{labels}")
        console.print(f"points per cloud (first {info['checked']}): {info['points_min']}–{info['points_max']}; "
                      f"NaN/Inf points: {info['nonfinite_points']}; empty clouds: {info['empty_clouds']}")


@data_app.command("to-points")
def to_points(
    volume: Path = typer.Argument(..., help="A NIfTI volume (.nii/.nii.gz) or a .npy array (identity affine)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output points: .h5, .ply or .npy."),
    threshold: float = typer.Option(0.5, "--threshold", "-t", help="Keep voxels strictly greater than this."),
    values: bool = typer.Option(False, "--values", help="Also store the voxel values (.h5 'values', .ply 'value')."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Turn a volume back into points: the centres of voxels above a threshold, in world coordinates (the NIfTI affine)."""
    from rich.console import Console

    from medgen_cli.data.points import volume_file_to_points

    path, n = volume_file_to_points(volume, out, threshold, values, overwrite)
    Console().print(f"wrote {n:,} points to {path}")


@data_app.command("synth-h5")
def synth_h5(
    out: Path = typer.Option(..., "--out", "-o", help="Output .h5 file."),
    n: int = typer.Option(64, "--n", min=1, help="Number of clouds (classes organ/shell/pair cycle)."),
    points: int = typer.Option(2048, "--points", min=1, help="Points per cloud (the maximum for ragged layouts)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    layout: str = typer.Option("fixed", "--layout", help="fixed ([N, P, 3] 'data' + 'label') | groups | concat."),
    values: bool = typer.Option(False, "--values", help="Add a per-point intensity (a 4th column / 'values')."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Write a synthetic set of anatomy-like phantom point clouds (ellipsoidal organs, shells, pairs) in mm."""
    from rich.console import Console

    from medgen_cli.data.synth import write_synth_h5

    path = write_synth_h5(out, n, points, seed, layout, values, overwrite)
    Console().print(f"wrote {n} phantom cloud(s) to {path} (layout {layout})")
