"""``fastgan``: FastGAN for a few hundred 2D images (registered by name; light import)."""

from __future__ import annotations

from medgen_cli.contract.registry import FamilySpec, register

register(
    FamilySpec(
        name="fastgan",
        config="medgen_cli.families.fastgan.config:FastGANConfig",
        family="medgen_cli.families.fastgan.family:FastGANFamily",
        help="FastGAN (skip-layer excitation, self-supervised discriminator) for a few hundred 2D images, FID-tracked.",
        options="medgen_cli.families.gan2d.options:OPTIONS",
    )
)
