"""Latent and image helpers of the 2D GANs' sampling (options: ``gan2d/options.py``; files are
written by the shared writers)."""

from __future__ import annotations

import torch

from medgen_cli.families.latents import seeded_normal


def seed_latents(seed: int, n: int, dim: int) -> torch.Tensor:
    """``[n, dim]`` latents, row ``i`` drawn from seed ``seed + i`` (StyleGAN's per-image seeds):
    an image depends on its own seed only, not on how many were generated with it."""
    return seeded_normal((dim,), range(seed, seed + n))


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] → float images in [0, 1]."""
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)
