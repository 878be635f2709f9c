"""Config of the ``stylegan2`` family (pure pydantic: imports without torch).

Defaults follow StyleGAN2-ADA's ``auto`` configuration at 64² with batch 8: a 2-layer mapping
network with lr multiplier 0.01, R1 γ = 0.0002·res²/batch, lazy R1 every 16 and path-length
every 4 steps, style mixing 0.9, an EMA half-life of 10·batch/32 k images, Adam(0, 0.99).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medgen_cli.contract.config import GANOptimizerConfig, StrictModel, with_defaults
from medgen_cli.families.gan2d.config import GAN2DConfig, GANTrainerConfig


@with_defaults(max_steps=25000)
class StyleGAN2TrainerConfig(GANTrainerConfig):
    """Trainer defaults: 25k steps (200k images at batch 8), no clipping, EMA of G (its decay comes
    from model.ema_halflife_images)."""


class StyleGAN2ModelConfig(StrictModel):
    """Mapping network, synthesis network (skip) and residual discriminator."""

    z_dim: int = Field(512, ge=1, description="Size of z.")
    w_dim: int = Field(512, ge=1, description="Size of w (the intermediate latent space).")
    mapping_layers: int = Field(2, ge=1, description="Layers of the mapping network (ADA auto: 2).")
    mapping_lr_mul: float = Field(0.01, gt=0.0, description="Learning-rate multiplier of the mapping network.")
    channel_base: int = Field(16384, ge=1, description="Channels at resolution r = min(channel_base / r, channel_max).")
    channel_max: int = Field(512, ge=1, description="Upper bound of the channels at any resolution.")
    mbstd_group: int = Field(
        4, ge=1,
        description="Minibatch-std group size of D (the largest divisor of the batch up to this); larger groups let "
                    "D see a batch's diversity better (StyleGAN2-ADA: 4 by default, 32 for CIFAR).",
    )
    w_avg_beta: float = Field(0.995, gt=0.0, lt=1.0, description="Decay of the tracked mean of w (truncation centre).")
    ema_halflife_images: float | None = Field(
        2500.0, gt=0.0,
        description="EMA half-life in images; sets the per-step decay 0.5**(batch/half-life) (null: trainer.ema.decay).",
    )


class StyleGAN2LossConfig(StrictModel):
    """Logistic loss with lazy R1 and path-length regularization."""

    r1_gamma: float | None = Field(None, ge=0.0, description="R1 weight γ (null: 0.0002·resolution²/batch, ADA auto).")
    r1_interval: int = Field(16, ge=1, description="Lazy R1: every N D steps (scaled by N).")
    pl_weight: float = Field(2.0, ge=0.0, description="Path-length regularization weight (0 = off).")
    pl_interval: int = Field(4, ge=1, description="Lazy path length: every N G steps (scaled by N).")
    pl_decay: float = Field(0.01, gt=0.0, lt=1.0, description="Decay of the running mean path length.")
    pl_batch_shrink: int = Field(2, ge=1, description="The path-length batch is batch_size / N.")
    style_mixing: float = Field(0.9, ge=0.0, le=1.0, description="Probability of mixing two latents in a G pass.")


@with_defaults(lr_g=0.0025, lr_d=0.0025, betas=(0.0, 0.99))
class StyleGAN2OptimizerConfig(GANOptimizerConfig):
    """Adam for both players (lazy-regularization corrected as in StyleGAN2)."""


class StyleGAN2Config(GAN2DConfig):
    """``medgen train stylegan2``: StyleGAN2 with ADA/DiffAugment for small 2D image sets."""

    family: Literal["stylegan2"] = "stylegan2"
    trainer: StyleGAN2TrainerConfig = Field(default_factory=StyleGAN2TrainerConfig)
    model: StyleGAN2ModelConfig = Field(default_factory=StyleGAN2ModelConfig)
    loss: StyleGAN2LossConfig = Field(default_factory=StyleGAN2LossConfig)
    optimizer: StyleGAN2OptimizerConfig = Field(default_factory=StyleGAN2OptimizerConfig)
