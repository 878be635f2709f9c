"""What ``medgen sample`` / ``interpolate`` accept for a stylegan2 run: the 2D GAN options plus
truncation. Pure pydantic: imports without torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medgen_cli.contract.options import FamilyOptions
from medgen_cli.families.gan2d.options import GAN2DInterpolateOptions, GAN2DSampleOptions


class StyleGAN2SampleOptions(GAN2DSampleOptions):
    """``medgen sample`` on a stylegan2 run: the 2D GAN options and a truncation psi."""

    truncation: float = Field(1.0, ge=0.0, description="Truncation psi (1 = none, 0 = the average image).")


class StyleGAN2InterpolateOptions(GAN2DInterpolateOptions):
    """StyleGAN2 interpolates linearly in W (where straight lines look smooth), so ``method`` is lerp."""

    method: Literal["lerp"] = Field("lerp", description="Linear in W (the only path StyleGAN2 offers).")
    truncation: float = Field(1.0, ge=0.0, description="Truncation psi applied to both endpoints.")


OPTIONS = FamilyOptions(sample=StyleGAN2SampleOptions, interpolate=StyleGAN2InterpolateOptions)
