"""Config of the ``autoencoder`` family (pure pydantic: importable without torch).

Defaults follow MONAI's 3D latent-diffusion tutorial (see REFERENCES.md): AutoencoderKL with
channels (32, 64, 64), 3 latent channels, 1 residual block, 16 norm groups and attention on the
last level; a 3-layer PatchDiscriminator with 32 channels; L1 + KL (1e-6) + LSGAN patch loss
(0.01, after a warm-up) + perceptual (0.001, only when local weights are configured).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medgen_cli.contract.config import FamilyConfig, StrictModel, TrainerConfig, with_defaults
from medgen_cli.data.image_config import ImageDataConfig

__all__ = ["AEModelConfig", "AutoencoderConfig", "ImageDataConfig"]


class AEModelConfig(StrictModel):
    """MONAI ``AutoencoderKL`` and ``PatchDiscriminator`` settings."""

    channels: list[int] = Field(default_factory=lambda: [32, 64, 64], description="Encoder/decoder channels per level (latent is downsampled len-1 times).")
    latent_channels: int = Field(3, ge=1, description="Channels of the latent.")
    num_res_blocks: int = Field(1, ge=1, description="Residual blocks per level.")
    norm_num_groups: int = Field(16, ge=1, description="GroupNorm groups (must divide every channel count).")
    norm: Literal["group", "none"] = Field("group", description="'group': MONAI's GroupNorm layers (the tutorial's). 'none': every GroupNorm replaced by identity — trains several times faster on small CPU patches, where per-patch statistics of 16^3 crops differ from those of whole volumes (measured in the README's preset table).")
    initial_latent_std: float | None = Field(None, gt=0.0, description="Start every latent's posterior standard deviation at this value (zero weights and bias log(std^2) in MONAI's log-variance convolution); null keeps MONAI's initialisation, where the sampled latent starts with noise of std ~1 that the small KL weight lets shrink only slowly.")
    attention_levels: list[bool] = Field(default_factory=lambda: [False, False, True], description="Self-attention per level.")
    with_nonlocal_attn: bool = Field(True, description="Attention block in the middle of encoder and decoder.")
    disc_channels: int = Field(32, ge=1, description="PatchDiscriminator base channels.")
    disc_layers: int = Field(3, ge=1, description="PatchDiscriminator strided layers.")

    @model_validator(mode="after")
    def _consistent(self) -> "AEModelConfig":
        if len(self.attention_levels) != len(self.channels):
            raise ValueError("model.attention_levels needs one entry per model.channels entry")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(f"model.norm_num_groups={self.norm_num_groups} must divide every model.channels entry {self.channels}")
        return self


class AELossConfig(StrictModel):
    """Loss weights (L1 reconstruction has weight 1)."""

    kl_weight: float = Field(1e-6, ge=0.0, description="KL divergence weight.")
    adv_weight: float = Field(0.01, ge=0.0, description="LSGAN patch adversarial weight (0 = no discriminator).")
    adv_start_step: int = Field(1000, ge=0, description="Adversarial loss off before this step (warm-up).")
    perceptual_weight: float = Field(0.001, ge=0.0, description="Perceptual weight, used only with perceptual_weights_path.")
    perceptual_weights_path: str | None = Field(None, description="Local torchvision ResNet-50 state dict for MONAI PerceptualLoss (off when empty; nothing is downloaded).")
    fake_3d_ratio: float = Field(0.2, gt=0.0, le=1.0, description="Fraction of slices used by the 2.5D perceptual loss.")


class AEOptimizerConfig(StrictModel):
    """Adam for the autoencoder (optimizer ``g``: the generator of its patch GAN) and for its
    discriminator (``d``)."""

    lr_g: float = Field(1e-4, gt=0.0, description="Adam learning rate of the autoencoder.")
    lr_d: float = Field(1e-4, gt=0.0, description="Adam learning rate of the discriminator.")


class AEValConfig(StrictModel):
    key_metric: Literal["l1", "psnr", "ssim"] = Field("l1", description="Validation metric that picks best.pt (l1: lower is better).")
    num_images: int = Field(2, ge=1, description="Volumes shown in the reconstruction image.")


@with_defaults(batch_size=2, ema={"enabled": True, "decay": 0.999})
class AETrainerConfig(TrainerConfig):
    """Trainer defaults: batch 2, EMA on."""


class AutoencoderConfig(FamilyConfig):
    """``medgen train autoencoder``: AutoencoderKL (+ PatchDiscriminator) on volumes or images."""

    family: Literal["autoencoder"] = "autoencoder"
    trainer: AETrainerConfig = Field(default_factory=AETrainerConfig)
    data: ImageDataConfig = Field(default_factory=ImageDataConfig)
    model: AEModelConfig = Field(default_factory=AEModelConfig)
    loss: AELossConfig = Field(default_factory=AELossConfig)
    optimizer: AEOptimizerConfig = Field(default_factory=AEOptimizerConfig)
    val: AEValConfig = Field(default_factory=AEValConfig)
