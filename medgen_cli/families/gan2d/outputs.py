"""Inference options and latent helpers of the 2D GANs (files are written by the shared writers)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from medgen_cli.contract.options import IMAGE_FORMATS, InterpolateOptions, SampleOptions
from medgen_cli.families.latents import seeded_normal


class GAN2DSampleOptions(SampleOptions):
    """``medgen sample`` on a 2D GAN: 8-bit PNGs (default) or float ``.npy`` in [0, 1]."""

    formats = IMAGE_FORMATS
    format: tuple[str, ...] = ("png",)


class GAN2DInterpolateOptions(InterpolateOptions):
    """``medgen interpolate`` on a 2D GAN: slerp (default) or lerp between two seeds' latents."""

    formats = IMAGE_FORMATS
    format: tuple[str, ...] = ("png",)


class StyleGAN2SampleOptions(GAN2DSampleOptions):
    truncation: float = Field(1.0, ge=0.0, description="Truncation psi (1 = none, 0 = the average image).")


class StyleGAN2InterpolateOptions(GAN2DInterpolateOptions):
    """StyleGAN2 interpolates linearly in W (where straight lines look smooth), so ``method`` is lerp."""

    method: Literal["lerp"] = Field("lerp", description="Linear in W (the only path StyleGAN2 offers).")
    truncation: float = Field(1.0, ge=0.0, description="Truncation psi applied to both endpoints.")


def seed_latents(seed: int, n: int, dim: int) -> torch.Tensor:
    """``[n, dim]`` latents, row ``i`` drawn from seed ``seed + i`` (StyleGAN's per-image seeds):
    an image depends on its own seed only, not on how many were generated with it."""
    return seeded_normal((dim,), range(seed, seed + n))


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] → float images in [0, 1]."""
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)
