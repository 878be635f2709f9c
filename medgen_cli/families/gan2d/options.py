"""What ``medgen sample`` / ``interpolate`` accept for the 2D GANs (sagan and fastgan use these;
stylegan2 adds truncation in its own ``options.py``). Pure pydantic: imports without torch."""

from __future__ import annotations

from medgen_cli.contract.options import IMAGE_FORMATS, FamilyOptions, InterpolateOptions, SampleOptions


class GAN2DSampleOptions(SampleOptions):
    """``medgen sample`` on a 2D GAN: 8-bit PNGs (default) or float ``.npy`` in [0, 1]."""

    formats = IMAGE_FORMATS
    format: tuple[str, ...] = ("png",)


class GAN2DInterpolateOptions(InterpolateOptions):
    """``medgen interpolate`` on a 2D GAN: slerp (default) or lerp between two seeds' latents."""

    formats = IMAGE_FORMATS
    format: tuple[str, ...] = ("png",)


OPTIONS = FamilyOptions(sample=GAN2DSampleOptions, interpolate=GAN2DInterpolateOptions)
