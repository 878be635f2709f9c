"""``sagan``: self-attention GAN for small 2D image sets (registered by name; light import)."""

from __future__ import annotations

from medgen_cli.contract.registry import FamilySpec, register

register(
    FamilySpec(
        name="sagan",
        config="medgen_cli.families.sagan.config:SAGANConfig",
        family="medgen_cli.families.sagan.family:SAGANFamily",
        help="Self-attention GAN (spectral norm, hinge loss, TTUR) for small 2D image sets, FID-tracked.",
        options="medgen_cli.families.gan2d.options:OPTIONS",
    )
)
