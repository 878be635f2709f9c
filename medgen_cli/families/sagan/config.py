"""Config of the ``sagan`` family (pure pydantic: imports without torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medgen_cli.contract.config import GANOptimizerConfig, StrictModel, with_defaults
from medgen_cli.families.gan2d.config import DiffAugmentConfig, GAN2DConfig, GANTrainerConfig


@with_defaults(max_steps=40000, batch_size=16, grad_clip=1.0, lr_schedule={"kind": "step", "step_size": 10000})
class SAGANTrainerConfig(GANTrainerConfig):
    """Trainer defaults for ~300 images at 64²: batch 16, clipping 1.0, EMA of G, StepLR (like the
    user's SAGAN script's StepLR(500 epochs, 0.5))."""


class SAGANModelConfig(StrictModel):
    """Generator and discriminator (residual blocks, spectral norm, self-attention)."""

    latent_dim: int = Field(128, ge=1, description="Size of z.")
    base_channels: int = Field(64, ge=1, description="Channels at full resolution; doubled per halving.")
    max_channels: int = Field(512, ge=1, description="Upper bound of the channels at any resolution.")
    attention_resolution: int | None = Field(16, description="Feature-map size with self-attention in G and D (None = off).")
    d_slope: float = Field(0.2, ge=0.0, lt=1.0, description="Negative slope of the discriminator's activations: 0.2 = LeakyReLU (default), whose gradient cannot vanish; 0 = the SAGAN paper's ReLU, whose critic can die on small data (every final feature negative, D constant, no signal to G: seen at 64 and at 16 base channels).")


class SAGANLossConfig(StrictModel):
    """Adversarial loss."""

    type: Literal["hinge", "bce"] = Field("hinge", description="hinge (SAGAN) or bce (with label smoothing).")
    real_label: float = Field(0.9, gt=0.0, le=1.0, description="bce: target of real images (one-sided smoothing).")
    n_critic: int = Field(1, ge=1, description="D updates per G update: D every step, G every n_critic-th step.")


@with_defaults(lr_g=1e-4, lr_d=4e-4, betas=(0.0, 0.9))
class SAGANOptimizerConfig(GANOptimizerConfig):
    """Two time-scale update rule (TTUR) with Adam."""


class SAGANConfig(GAN2DConfig):
    """``medgen train sagan``: self-attention GAN for small 2D image sets."""

    family: Literal["sagan"] = "sagan"
    trainer: SAGANTrainerConfig = Field(default_factory=SAGANTrainerConfig)
    model: SAGANModelConfig = Field(default_factory=SAGANModelConfig)
    loss: SAGANLossConfig = Field(default_factory=SAGANLossConfig)
    optimizer: SAGANOptimizerConfig = Field(default_factory=SAGANOptimizerConfig)
    augment: DiffAugmentConfig = Field(default_factory=DiffAugmentConfig)
