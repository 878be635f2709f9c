"""``medgen sample`` and ``medgen interpolate``: dispatch on the family of a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medgen_cli.cli.app import app


@app.command("sample")
def sample(
    run: Path = typer.Argument(..., help="A run directory (runs/<family>/<name>)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: RUN/samples/<timestamp>)."),
    num: int = typer.Option(8, "--num", "-n", min=1, help="Number of samples."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same samples."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Samples generated at once."),
    fmt: str = typer.Option("nifti", "--format", help="nifti | npy | png | points (what the family supports)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Diffusion: ddpm | ddim | rflow."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion: number of sampling steps."),
    truncation: float = typer.Option(1.0, "--truncation", help="StyleGAN2: truncation psi (1 = none)."),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", help="Conditional diffusion: classifier-free guidance scale."),
    class_label: Optional[int] = typer.Option(None, "--class-label", help="Conditional models: class to generate."),
    threshold: float = typer.Option(0.5, "--threshold", help="Voxel threshold for point export / sparse output."),
    input_path: Optional[Path] = typer.Option(None, "--input", help="Autoencoder runs: a volume to reconstruct."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | latest | a path to a .pt file."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files in --out."),
) -> None:
    """Generate samples from a trained run (any family that can sample)."""
    from medgen_cli.engine.inference import SampleOptions
    from medgen_cli.engine.run_loading import load_run, default_out

    loaded = load_run(run, checkpoint=checkpoint, device=device)
    opts = SampleOptions(
        out=out or default_out(run, "samples"), num=num, seed=seed, batch_size=batch_size, format=fmt,
        scheduler=scheduler, steps=steps, truncation=truncation, guidance_scale=guidance_scale,
        class_label=class_label, threshold=threshold, input=input_path, overwrite=overwrite,
    )
    paths = loaded.sample_to_dir(opts)
    loaded.report(paths, opts.out)


@app.command("interpolate")
def interpolate(
    run: Path = typer.Argument(..., help="A run directory (runs/<family>/<name>)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: RUN/samples/interp-<timestamp>)."),
    seed_a: int = typer.Option(0, "--seed-a", help="Seed of the first endpoint."),
    seed_b: int = typer.Option(1, "--seed-b", help="Seed of the second endpoint."),
    steps: int = typer.Option(8, "--steps", "-k", min=2, help="Number of frames including both endpoints."),
    method: str = typer.Option("slerp", "--method", help="slerp | lerp."),
    fmt: str = typer.Option("nifti", "--format", help="Volume format of the frames: nifti | npy | png."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Diffusion: sampler (default ddim)."),
    sample_steps: Optional[int] = typer.Option(None, "--sample-steps", min=1, help="Diffusion: sampling steps per frame."),
    truncation: float = typer.Option(1.0, "--truncation", help="StyleGAN2: truncation psi."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | latest | a path to a .pt file."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files in --out."),
) -> None:
    """Interpolate between two seeds of a trained run and write the frames and a strip image."""
    from medgen_cli.engine.inference import InterpolateOptions
    from medgen_cli.engine.run_loading import load_run, default_out

    if method not in ("slerp", "lerp"):
        from medgen_cli.errors import MedgenError

        raise MedgenError(f"--method must be slerp or lerp, not {method!r}")
    loaded = load_run(run, checkpoint=checkpoint, device=device)
    opts = InterpolateOptions(
        out=out or default_out(run, "interp"), seed_a=seed_a, seed_b=seed_b, steps=steps, method=method,
        format=fmt, scheduler=scheduler, sample_steps=sample_steps, truncation=truncation, overwrite=overwrite,
    )
    paths = loaded.interpolate_to_dir(opts)
    loaded.report(paths, opts.out)
