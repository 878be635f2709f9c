"""Sparse-view CBCT commands: ``medgen data make-cbct``, ``medgen recon``, ``medgen eval recon``.

Thin: parse options, call :mod:`medgen_cli.data.cbct.build` / :mod:`medgen_cli.engine.recon`, print.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer

from medgen_cli.cli.family_flags import family_options, given
from medgen_cli.cli.root import app
from medgen_cli.cli.groups import data_app, eval_app
from medgen_cli.families.dif_gaussian.config import QUERY_CHUNK
from medgen_cli.progress import track


@data_app.command("make-cbct")
def make_cbct_cmd(
    volumes_dir: Optional[Path] = typer.Argument(None, help="Folder of CT volumes (*.nii, *.nii.gz) in HU."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: train/, val/, test/ case files (*.h5)."),
    synthetic: int = typer.Option(0, "--synthetic", help="Make N synthetic ellipsoid phantoms instead of reading volumes."),
    geometry: Optional[Path] = typer.Option(None, "--geometry", help="Geometry YAML (default: LUNA16, see configs/cbct_geometry.yaml)."),
    size: Optional[int] = typer.Option(None, "--size", help="Scale the geometry to N³ voxels (N² detector), keeping the field of view."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=0.5, help="Fraction of cases for val/."),
    test_fraction: float = typer.Option(0.1, "--test-fraction", min=0.0, max=0.5, help="Fraction of cases for test/."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split (and of the synthetic phantoms)."),
    allow_truncation: bool = typer.Option(False, "--allow-truncation", help="Accept objects that leave the detector."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild every case file; files the new manifest does not list are removed."),
    poses: int = typer.Option(0, "--poses", min=0, help="Augment: N randomly posed copies of each volume (0 = each volume once, unposed)."),
    pose_rotation: float = typer.Option(15.0, "--pose-rotation", help="Largest rotation about each axis, degrees."),
    pose_scale: str = typer.Option("0.9,1.1", "--pose-scale", help="Isotropic scale range LO,HI."),
    pose_shift: float = typer.Option(0.05, "--pose-shift", help="Largest shift per axis, as a fraction of the grid edge."),
    pose_flip: str = typer.Option("x", "--pose-flip", help="Axes flipped at random (each with probability 1/2), e.g. x, xyz, or none."),
) -> None:
    """Simulate cone-beam projections of CT volumes with diffct: one H5 per case with its geometry.

    HU -1000..1024 → 0..1, resampled to the geometry's voxel spacing, centre-cropped/padded to its grid.

    --poses N turns each volume into N cases with random rotation/scale/shift/flip (seeded by --seed and the volume name); all poses of a volume share its split.

    Re-running resumes: finished cases are kept.
    """
    from rich.console import Console
    from rich.markup import escape

    from medgen_cli.data.cbct.build import build_cbct_dataset

    summary = build_cbct_dataset(out, volumes_dir, synthetic, geometry, size, val_fraction, test_fraction, seed,
                                 allow_truncation, overwrite, poses, pose_rotation, pose_scale, pose_shift, pose_flip,
                                 track=track)
    counts = summary["counts"]
    for warning in summary["warnings"]:
        Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    Console(stderr=True).print(
        f"[green]{summary['written']} written, {summary['skipped']} kept[/] in {out} "
        + (f"({summary['removed']} stale file(s) removed) " if summary["removed"] else "") +
        f"(train {counts['train']}, val {counts['val']}, test {counts['test']}; "
        f"{summary['volume_size']}³ voxels, {summary['num_angles']} views)", highlight=False)


@app.command("recon")
@family_options("recon", skip=("input", "format", "threshold"))
def recon_cmd(
    run: Optional[Path] = typer.Argument(None, help="A dif-gaussian run directory (not needed for fdk/sirt)."),
    input: Path = typer.Option(..., "--input", "-i", help="A case file (CASE.h5 from make-cbct) or a CT volume (.nii/.nii.gz, HU)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output NIfTI (.nii.gz) in [0, 1] with the input's affine."),
    views: Optional[int] = typer.Option(None, "--views", "-v", help="Projections to use (default: the run's largest; 10 for fdk/sirt)."),
    method: str = typer.Option("model", "--method", "-m", help="model (the run), or a diffct baseline: fdk, sirt."),
    geometry: Optional[Path] = typer.Option(None, "--geometry", help="Geometry YAML for a NIfTI input with fdk/sirt (a run uses its own)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, latest, or a checkpoint file."),
    iterations: Optional[int] = typer.Option(None, "--iterations", min=1, help="--method sirt: iterations (default 50)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    **options: Any,
) -> None:
    """Reconstruct a CT volume from N evenly spread cone-beam views (or, with an autoencoder run, its reconstruction of a volume).

    A case file keeps its grid and affine.

    A NIfTI volume is resampled to the geometry's grid and its N views are simulated; the result is written on the input's voxel grid with its affine.

    The run's own options (--chunk, ...) apply to --method model.
    """
    from medgen_cli.engine.recon import recon_to_file
    from medgen_cli.progress import stderr_console

    console = stderr_console()
    t0 = time.perf_counter()
    result = recon_to_file(run, input, out, method, views, checkpoint, device, geometry, iterations, given(options),
                           overwrite=overwrite, say=console.print, track=track)
    info = (result.extra or [{}])[0]
    what = [method if method != "model" else "the run's model"] + ([f"{info['views']} views"] if "views" in info else [])
    msg = f"[green]wrote[/] {out} ({', '.join(what)}, {time.perf_counter() - t0:.2f}s)"
    if "psnr" in info:
        msg += f"  PSNR {info['psnr']:.2f} dB, SSIM {info['ssim']:.4f} vs the case volume"
    console.print(msg)


@eval_app.command("recon")
def eval_recon_cmd(
    run: Optional[Path] = typer.Argument(None, help="A dif-gaussian run directory (or --method fdk|sirt)."),
    data: Path = typer.Option(..., "--data", "-d", help="A folder of case files, e.g. DIR/test."),
    views: Optional[int] = typer.Option(None, "--views", "-v", help="Projections to use (default: the run's largest; 10 for fdk/sirt)."),
    method: str = typer.Option("model", "--method", "-m", help="model (the run), or a diffct baseline: fdk, sirt."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, latest, or a checkpoint file."),
    iterations: int = typer.Option(50, "--iterations", min=1, help="SIRT iterations."),
    chunk: int = typer.Option(QUERY_CHUNK, "--chunk", min=1, help="Points per model forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """PSNR and SSIM (data range 1, volumes in [0, 1]) per case and on average.

    SSIM: scikit-image structural_similarity over the 3D volume (7³ uniform window).
    """
    from medgen_cli.engine.recon import evaluate_recon

    results = evaluate_recon(run, data, views, method, checkpoint, iterations, chunk, device, track=track)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    used = f" · {results['checkpoint']}" if results["checkpoint"] else ""
    table = Table(title=f"{results['method']}{used} · {results['views']} views · {results['data']}")
    for col in ("case", "PSNR (dB)", "SSIM", "time (s)"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in results["cases"]:
        table.add_row(r["case"], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['seconds']:.2f}")
    m = results["mean"]
    table.add_row("[bold]mean[/]", f"[bold]{m['psnr']:.2f}", f"[bold]{m['ssim']:.4f}", f"{m['seconds']:.2f}")
    Console().print(table)
