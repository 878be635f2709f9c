"""``diffusion`` family: MONAI DiffusionModelUNet on the latents of a trained autoencoder run."""

from medgen_cli.contract.registry import FamilySpec, register

register(FamilySpec(
    name="diffusion",
    config="medgen_cli.families.diffusion.config:DiffusionConfig",
    family="medgen_cli.families.diffusion.family:DiffusionFamily",
    help="Latent diffusion (DDPM/DDIM, optional class conditioning with CFG) on an autoencoder run.",
    options="medgen_cli.families.diffusion.options:OPTIONS",
))
