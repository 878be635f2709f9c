"""Config of the ``sagan`` family (pure pydantic: imports without torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medgen_cli.contract.config import FamilyConfig, OptimConfig, StrictModel, TrainerConfig
from medgen_cli.families.gan2d.config import DiffAugmentConfig, FIDConfig, GANEMAConfig, ImageDataConfig


class SAGANOptimConfig(OptimConfig):
    """StepLR by default, like the user's SAGAN script (StepLR(500 epochs, 0.5))."""

    schedule: Literal["constant", "cosine", "step", "exponential"] = Field("step", description="LR schedule after warm-up.")
    step_size: int = Field(10000, ge=1, description="'step' schedule: multiply the LR by gamma every N steps.")


class SAGANTrainerConfig(TrainerConfig):
    """Trainer defaults for ~300 images at 64²: batch 16, clipping 1.0, EMA of G, StepLR."""

    max_steps: int = Field(40000, ge=1, description="Stop after this many optimizer steps.")
    batch_size: int = Field(16, ge=1, description="Batch size per process.")
    grad_clip: float | None = Field(1.0, gt=0.0, description="Clip the gradient norm of each optimizer's parameters.")
    ema: GANEMAConfig = Field(default_factory=GANEMAConfig)
    optim: SAGANOptimConfig = Field(default_factory=SAGANOptimConfig)
    val_every: int = Field(200, ge=1, description="Run validation (FID when on fid.schedule) every N steps.")
    ckpt_every: int = Field(1000, ge=1, description="Write latest.pt and step_N.pt every N steps.")


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


class SAGANOptimizerConfig(StrictModel):
    """Two time-scale update rule (TTUR) with Adam."""

    lr_g: float = Field(1e-4, gt=0.0, description="Generator learning rate.")
    lr_d: float = Field(4e-4, gt=0.0, description="Discriminator learning rate.")
    betas: tuple[float, float] = Field((0.0, 0.9), description="Adam betas.")


class SAGANConfig(FamilyConfig):
    """``medgen train sagan``: self-attention GAN for small 2D image sets."""

    family: Literal["sagan"] = "sagan"
    trainer: SAGANTrainerConfig = Field(default_factory=SAGANTrainerConfig)
    data: ImageDataConfig = Field(default_factory=ImageDataConfig)
    model: SAGANModelConfig = Field(default_factory=SAGANModelConfig)
    loss: SAGANLossConfig = Field(default_factory=SAGANLossConfig)
    optimizer: SAGANOptimizerConfig = Field(default_factory=SAGANOptimizerConfig)
    augment: DiffAugmentConfig = Field(default_factory=DiffAugmentConfig)
    fid: FIDConfig = Field(default_factory=FIDConfig)
