"""``autoencoder`` family: MONAI AutoencoderKL (+ PatchDiscriminator), stage 1 of latent diffusion."""

from medgen_cli.contract.registry import FamilySpec, register

register(FamilySpec(
    name="autoencoder",
    config="medgen_cli.families.autoencoder.config:AutoencoderConfig",
    family="medgen_cli.families.autoencoder.family:AutoencoderFamily",
    help="AutoencoderKL on volumes/images (L1 + KL + patch adversarial); stage 1 of latent diffusion.",
    options="medgen_cli.families.autoencoder.options:OPTIONS",
))
