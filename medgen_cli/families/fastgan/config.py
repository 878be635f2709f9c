"""Config of the ``fastgan`` family (pure pydantic: imports without torch).

Defaults follow the authors' training script: batch 8, Adam(2e-4, β = (0.5, 0.999)) for both
players, hinge loss with random real/fake margins in [0.8, 1.0], reconstruction loss on real
images, DiffAugment colour + translation, EMA of G with decay 0.999.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medgen_cli.contract.config import GANOptimizerConfig, StrictModel, with_defaults
from medgen_cli.families.gan2d.config import DiffAugmentConfig, GAN2DConfig, GANTrainerConfig


@with_defaults(max_steps=50000)
class FastGANTrainerConfig(GANTrainerConfig):
    """Trainer defaults: 50k steps (400k images at batch 8), no clipping, EMA of G, constant LR."""


class FastGANModelConfig(StrictModel):
    """Widths of the two networks: channels at r×r are BASE × (16, 8, 4, 2, 2, 1, ½ …) for
    r = 4, 8, 16, 32, 64, 128, 256 …, at most MAX."""

    z_dim: int = Field(256, ge=1, description="Size of z.")
    g_channels: int = Field(64, ge=1, description="Generator base width (the authors' ngf).")
    d_channels: int = Field(64, ge=1, description="Discriminator base width (the authors' ndf).")
    max_channels: int = Field(1024, ge=1, description="Upper bound of the channels at any resolution.")
    noise: bool = Field(False, description="Per-pixel noise after each conv of the two-conv up-blocks (the authors' "
                        "NoiseInjection: learned strength, zero at start) for fine grain. The maps are a fixed "
                        "random projection of z, so a seed still fixes an image and interpolation morphs the grain.")


class FastGANLossConfig(StrictModel):
    """Hinge loss with random margins and the discriminator's reconstruction loss."""

    margin_noise: float = Field(0.2, ge=0.0, lt=1.0, description="Hinge margins are drawn from [1 - X, 1] per logit "
                                                                   "(the authors' 0.2): D is never fully confident.")
    recon_weight: float = Field(1.0, ge=0.0, description="Weight of D's L1 reconstruction loss on real images "
                                                         "(0 = a plain discriminator).")


@with_defaults(lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999))
class FastGANOptimizerConfig(GANOptimizerConfig):
    """Adam for both players (the authors' 2e-4, β = (0.5, 0.999))."""


@with_defaults(policy="color,translation")
class FastGANAugmentConfig(DiffAugmentConfig):
    """DiffAugment colour + translation by default (the authors' policy)."""


class FastGANConfig(GAN2DConfig):
    """``medgen train fastgan``: FastGAN (skip-layer excitation, self-supervised discriminator) for
    a few hundred 2D images."""

    family: Literal["fastgan"] = "fastgan"
    trainer: FastGANTrainerConfig = Field(default_factory=FastGANTrainerConfig)
    model: FastGANModelConfig = Field(default_factory=FastGANModelConfig)
    loss: FastGANLossConfig = Field(default_factory=FastGANLossConfig)
    optimizer: FastGANOptimizerConfig = Field(default_factory=FastGANOptimizerConfig)
    augment: FastGANAugmentConfig = Field(default_factory=FastGANAugmentConfig)

    @model_validator(mode="after")
    def _resolution(self) -> "FastGANConfig":
        if not 16 <= self.data.resolution <= 1024:
            raise ValueError(f"fastgan needs data.resolution between 16 and 1024, not {self.data.resolution}")
        return self
