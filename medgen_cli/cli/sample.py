"""``medgen sample`` and ``medgen interpolate``: thin callers of :func:`medgen_cli.engine.inference.infer_to_dir`.

Options left unset take the run family's own default (shown in each help line); an option the
run's family does not take is refused with one line, never ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from medgen_cli.cli.root import app

_FORMAT_HELP = ("nifti | npy | png | points (default: nifti for volume families, png for 2D GANs). "
                "One format per sample folder; a comma list (nifti,points) writes OUT/<format>/ each.")
_CHECKPOINT_HELP = "best | latest | a path to a .pt file (best falls back to latest; the one used is printed)."
_DEVICE_HELP = "auto | cpu | cuda[:N] | mps."


def _set(**flags: Any) -> dict[str, Any]:
    """The options the user gave (``None`` = not given: the family's default applies)."""
    return {k: v for k, v in flags.items() if v is not None}


def _report(result: Any) -> None:
    from rich.console import Console

    written = result.written
    result.loaded.report(written.files, result.out)
    console = Console(stderr=True)
    folders = ", ".join(str(f) for f in written.folders.values())
    console.print(f"samples + manifest.json in {folders}; previews in {result.out / 'preview'}", highlight=False)


@app.command("sample")
def sample(
    run: Path = typer.Argument(..., help="A run directory (runs/<family>/<name>)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: RUN/samples/samples-<timestamp>)."),
    num: Optional[int] = typer.Option(None, "--num", "-n", min=1, help="Number of samples (default 8)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Sample i comes from seed + i (default 0): the same seed gives the same sample."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Samples generated at once (default 4); does not change them."),
    fmt: Optional[str] = typer.Option(None, "--format", help=_FORMAT_HELP),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Diffusion: sampler, e.g. ddpm | ddim | rflow (default: the run's sample.scheduler)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion: sampling steps (default: the run's sample.steps)."),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="StyleGAN2: truncation psi (default 1 = none)."),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", help="Class-conditional diffusion: classifier-free guidance (default: the run's conditioning.guidance_scale)."),
    class_label: Optional[int] = typer.Option(None, "--class-label", help="Class-conditional diffusion: class of every sample (default: seed s draws class s mod classes)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="--format points: voxels above this become points (default 0.5)."),
    input_path: Optional[Path] = typer.Option(None, "--input", help="Autoencoder runs: the volume/image to reconstruct."),
    resize: Optional[bool] = typer.Option(None, "--resize/--no-resize", help="--input: resize it to the run's data.size (default), or keep its own voxel grid (3D)."),
    tile: Optional[str] = typer.Option(None, "--tile", help="--input: volumes larger than this are reconstructed in overlapping tiles (MONAI sliding window, Gaussian blending); voxels, e.g. 64 or 64,64,32 (default: the run's data.size, the training size)."),
    overlap: Optional[float] = typer.Option(None, "--overlap", help="--input: fraction of a tile shared with its neighbour, in [0, 1) (default 0.25)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help=_CHECKPOINT_HELP),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the samples of an earlier run of this command in --out."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Split the seeds over N processes (torchrun; one GPU each "
                              "where there are GPUs): the same files and manifest as one process."),
) -> None:
    """Generate samples from a trained run (autoencoder runs: reconstruct --input).

    OUT holds the samples in one format and manifest.json ({file, seed, label} per sample); previews go to OUT/preview/.
    """
    from medgen_cli.engine.inference import infer_to_dir

    flags = _set(num=num, seed=seed, batch_size=batch_size, format=fmt, scheduler=scheduler, steps=steps,
                 truncation=truncation, guidance_scale=guidance_scale, class_label=class_label,
                 threshold=threshold, input=input_path, resize=resize, tile=tile, overlap=overlap)
    if nproc > 1 or _torchrun_worker():
        _sample_sharded(run, flags, out, checkpoint, device, overwrite, nproc)
        return
    _report(infer_to_dir(run, "sample", flags, out, checkpoint=checkpoint, device=device, overwrite=overwrite))


def _torchrun_worker() -> bool:
    """Whether this process is one of several torchrun workers (from --nproc, or torchrun by hand)."""
    import os

    return int(os.environ.get("WORLD_SIZE", 1)) > 1


def _sample_sharded(run: Path, flags: dict[str, Any], out: Optional[Path], checkpoint: str, device: str,
                    overwrite: bool, nproc: int) -> None:
    """``--nproc``: check the request here (one error line, not one per rank), then rerun this
    command under torchrun, whose workers split the seeds."""
    import os
    import sys

    from medgen_cli.engine.sharded import check_sharded, sample_sharded
    from medgen_cli.engine.torchrun import Launch, spawn

    if "LOCAL_RANK" not in os.environ:
        target = check_sharded(run, flags, out, checkpoint, overwrite)
        argv = sys.argv[1:] + ([] if out is not None else ["--out", str(target)])
        raise SystemExit(spawn(Launch(nproc=nproc), argv))
    result = sample_sharded(run, flags, out, checkpoint=checkpoint, device=device, overwrite=overwrite)
    if result is not None:
        _report(result)


@app.command("interpolate")
def interpolate(
    run: Path = typer.Argument(..., help="A run directory (runs/<family>/<name>)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: RUN/samples/interpolate-<timestamp>)."),
    seed_a: Optional[int] = typer.Option(None, "--seed-a", min=0, help="Seed of the first endpoint (default 0)."),
    seed_b: Optional[int] = typer.Option(None, "--seed-b", min=0, help="Seed of the last endpoint (default 1)."),
    steps: Optional[int] = typer.Option(None, "--steps", "-k", min=2, help="Number of frames including both endpoints (default 8)."),
    method: Optional[str] = typer.Option(None, "--method", help="slerp | lerp (default slerp; StyleGAN2: lerp in W only)."),
    fmt: Optional[str] = typer.Option(None, "--format", help=_FORMAT_HELP),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Diffusion: sampler (default: ddim, or rflow for rflow runs; both deterministic)."),
    sample_steps: Optional[int] = typer.Option(None, "--sample-steps", min=1, help="Diffusion: sampling steps per frame (default: the run's sample.steps)."),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="StyleGAN2: truncation psi (default 1)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="--format points: voxels above this become points (default 0.5)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help=_CHECKPOINT_HELP),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the frames of an earlier run of this command in --out."),
) -> None:
    """Interpolate between two seeds of a trained run: the frames, manifest.json and OUT/preview/strip.png (every family; 2D GANs also preview/interpolation.gif)."""
    from medgen_cli.engine.inference import infer_to_dir

    flags = _set(seed_a=seed_a, seed_b=seed_b, steps=steps, method=method, format=fmt, scheduler=scheduler,
                 sample_steps=sample_steps, truncation=truncation, threshold=threshold)
    _report(infer_to_dir(run, "interpolate", flags, out, checkpoint=checkpoint, device=device, overwrite=overwrite))
