"""Options shared by ``medgen sample`` and ``medgen interpolate``; families read what they use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SampleOptions:
    """``medgen sample`` options. A family ignores the ones that do not apply to it, but must
    raise :class:`~medgen_cli.errors.MedgenError` if the user set one it cannot honour."""

    out: Path
    num: int = 8
    seed: int = 0
    batch_size: int = 4
    format: str = "nifti"          # nifti | npy | png | points
    scheduler: str | None = None   # diffusion: ddpm | ddim
    steps: int | None = None       # diffusion sampling steps
    truncation: float = 1.0        # stylegan2
    guidance_scale: float | None = None  # conditional diffusion
    class_label: int | None = None
    threshold: float = 0.5         # points export / sparse pruning
    input: Path | None = None      # autoencoder reconstruction / CBCT recon input
    overwrite: bool = False


@dataclass
class InterpolateOptions:
    """``medgen interpolate`` options."""

    out: Path
    seed_a: int = 0
    seed_b: int = 1
    steps: int = 8
    method: str = "slerp"          # slerp | lerp
    format: str = "nifti"
    scheduler: str | None = None
    sample_steps: int | None = None
    truncation: float = 1.0
    overwrite: bool = False
