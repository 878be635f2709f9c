"""``stylegan2``: StyleGAN2 for small 2D image sets (registered by name; light import)."""

from __future__ import annotations

from medgen_cli.contract.registry import FamilySpec, register

register(
    FamilySpec(
        name="stylegan2",
        config="medgen_cli.families.stylegan2.config:StyleGAN2Config",
        family="medgen_cli.families.stylegan2.family:StyleGAN2Family",
        help="StyleGAN2 (mapping net, modulated convs, R1, path length) with ADA/DiffAugment, FID-tracked.",
        options="medgen_cli.families.stylegan2.options:OPTIONS",
    )
)
