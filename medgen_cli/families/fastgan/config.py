"""Config of the ``fastgan`` family (pure pydantic: imports without torch).

Defaults follow the authors' training script: batch 8, Adam(2e-4, β = (0.5, 0.999)) for both
players, hinge loss with random real/fake margins in [0.8, 1.0], reconstruction loss on real
images, DiffAugment colour + translation, EMA of G with decay 0.999.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medgen_cli.contract.config import FamilyConfig, StrictModel, TrainerConfig
from medgen_cli.families.gan2d.config import DiffAugmentConfig, FIDConfig, GANEMAConfig, ImageDataConfig


class FastGANTrainerConfig(TrainerConfig):
    """Trainer defaults: batch 8, no clipping, EMA of G, constant LR."""

    max_steps: int = Field(50000, ge=1, description="Stop after this many optimizer steps (400k images at batch 8).")
    batch_size: int = Field(8, ge=1, description="Batch size per process.")
    ema: GANEMAConfig = Field(default_factory=GANEMAConfig)
    val_every: int = Field(200, ge=1, description="Run validation (FID when on fid.schedule) every N steps.")
    ckpt_every: int = Field(1000, ge=1, description="Write latest.pt and step_N.pt every N steps.")


class FastGANModelConfig(StrictModel):
    """Widths of the two networks: channels at r×r are BASE × (16, 8, 4, 2, 2, 1, ½ …) for
    r = 4, 8, 16, 32, 64, 128, 256 …, at most MAX."""

    z_dim: int = Field(256, ge=1, description="Size of z.")
    g_channels: int = Field(64, ge=1, description="Generator base width (the authors' ngf).")
    d_channels: int = Field(64, ge=1, description="Discriminator base width (the authors' ndf).")
    max_channels: int = Field(1024, ge=1, description="Upper bound of the channels at any resolution.")


class FastGANLossConfig(StrictModel):
    """Hinge loss with random margins and the discriminator's reconstruction loss."""

    margin_noise: float = Field(0.2, ge=0.0, lt=1.0, description="Hinge margins are drawn from [1 - X, 1] per logit "
                                                                   "(the authors' 0.2): D is never fully confident.")
    recon_weight: float = Field(1.0, ge=0.0, description="Weight of D's L1 reconstruction loss on real images "
                                                         "(0 = a plain discriminator).")


class FastGANOptimizerConfig(StrictModel):
    """Adam for both players."""

    lr_g: float = Field(2e-4, gt=0.0, description="Generator learning rate.")
    lr_d: float = Field(2e-4, gt=0.0, description="Discriminator learning rate.")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas.")


class FastGANAugmentConfig(DiffAugmentConfig):
    """DiffAugment colour + translation by default (the authors' policy)."""

    policy: str = Field("color,translation", description="DiffAugment policy: comma-separated color, translation, cutout.")


class FastGANConfig(FamilyConfig):
    """``medgen train fastgan``: FastGAN (skip-layer excitation, self-supervised discriminator) for
    a few hundred 2D images."""

    family: Literal["fastgan"] = "fastgan"
    trainer: FastGANTrainerConfig = Field(default_factory=FastGANTrainerConfig)
    data: ImageDataConfig = Field(default_factory=ImageDataConfig)
    model: FastGANModelConfig = Field(default_factory=FastGANModelConfig)
    loss: FastGANLossConfig = Field(default_factory=FastGANLossConfig)
    optimizer: FastGANOptimizerConfig = Field(default_factory=FastGANOptimizerConfig)
    augment: FastGANAugmentConfig = Field(default_factory=FastGANAugmentConfig)
    fid: FIDConfig = Field(default_factory=FIDConfig)

    @model_validator(mode="after")
    def _resolution(self) -> "FastGANConfig":
        if not 16 <= self.data.resolution <= 1024:
            raise ValueError(f"fastgan needs data.resolution between 16 and 1024, not {self.data.resolution}")
        return self
