"""Config of the ``diffusion`` family (pure pydantic: importable without torch).

Defaults follow MONAI's 3D latent-diffusion tutorial (see REFERENCES.md): DiffusionModelUNet with
channels (32, 64, 64), attention on the last two levels, head channels (0, 64, 64); DDPM with
1,000 steps and a ``scaled_linear_beta`` schedule from 0.0015 to 0.0195.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medgen_cli.contract.config import FamilyConfig, StrictModel, TrainerConfig, with_defaults
from medgen_cli.families.autoencoder.config import AutoencoderConfig


class LatentDataConfig(StrictModel):
    """Where the training volumes come from. Size, dimensionality and intensity scaling are the
    autoencoder run's (the latents only make sense for data prepared the same way)."""

    root: str | None = Field(None, description="Data folder (default: the autoencoder run's data.root).")
    flip: bool = Field(
        True, description="Random flips along each axis, told to the UNet (data.flip_label) and never drawn: 8 views "
                          "of each volume without mirrored anatomy in the samples (measured on 128 posed brain "
                          "surfaces: 1-NNA 48% vs 56% without flips, floor 45%; 77% with flips not told; "
                          "docs/diffusion.md).")
    flip_label: bool = Field(
        True, description="With flip on: the UNet is told which flips each training volume got (an embedding added "
                          "to the time embedding, EDM's non-leaking augmentation) and samples with none, so flips "
                          "add views of the data without teaching mirrored shapes. Off: flips leak into the samples "
                          "(only for mirror-symmetric data).")
    cache_rate: float = Field(0.25, ge=0.0, le=1.0, description="Fraction of volumes cached in memory.")
    cache_max_gb: float = Field(2.0, ge=0.0, description="At most this many GiB of cached volumes per machine (split between its DDP processes; train and val each).")
    latent_cache_gb: float = Field(
        1.0, ge=0.0, description="Keep the frozen autoencoder's posterior (mean, std) of each distinct training/val "
                                 "volume (every flip its own) in memory, up to this many GiB per process, instead of "
                                 "encoding it on every step; 0 encodes every step.")


class UNetConfig(StrictModel):
    """MONAI ``DiffusionModelUNet`` on the latents."""

    channels: list[int] = Field(default_factory=lambda: [32, 64, 64], description="Channels per level.")
    attention_levels: list[bool] = Field(default_factory=lambda: [False, True, True], description="Self-attention per level.")
    num_head_channels: list[int] = Field(default_factory=lambda: [0, 64, 64], description="Attention head channels per level.")
    num_res_blocks: int = Field(1, ge=1, description="Residual blocks per level.")
    norm_num_groups: int = Field(32, ge=1, description="GroupNorm groups (must divide every channel count).")

    @model_validator(mode="after")
    def _consistent(self) -> "UNetConfig":
        n = len(self.channels)
        if len(self.attention_levels) != n or len(self.num_head_channels) != n:
            raise ValueError("unet.attention_levels and unet.num_head_channels need one entry per unet.channels entry")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(f"unet.norm_num_groups={self.norm_num_groups} must divide every unet.channels entry {self.channels}")
        return self


class NoiseScheduleConfig(StrictModel):
    """The training objective and forward process: DDPM (sampled with DDPM or DDIM) or rectified
    flow (MONAI's ``RFlowScheduler``, as MAISI v2; sampled with ``rflow`` in ~30 steps)."""

    objective: Literal["ddpm", "rflow"] = Field("ddpm", description="ddpm: noise schedule below, UNet predicts prediction_type; rflow: straight noise-to-data paths, UNet predicts the velocity (prediction_type and the beta schedule are unused).")
    timestep_sampling: Literal["uniform", "logit-normal"] = Field("logit-normal", description="rflow: distribution of training times (logit-normal favours the middle, as MAISI).")
    num_train_timesteps: int = Field(1000, ge=2, description="Diffusion steps of the forward process.")
    schedule: Literal["linear_beta", "scaled_linear_beta", "cosine"] = Field("scaled_linear_beta", description="Beta schedule (MONAI names).")
    beta_start: float = Field(0.0015, gt=0.0, description="First beta (linear schedules).")
    beta_end: float = Field(0.0195, gt=0.0, description="Last beta (linear schedules).")
    prediction_type: Literal["epsilon", "v_prediction"] = Field("epsilon", description="What the UNet predicts.")
    clip_sample: bool = Field(False, description="Clip the predicted clean latent to [-1, 1] while sampling.")


class ConditioningConfig(StrictModel):
    """Class-conditional generation from the manifest's labels with classifier-free guidance."""

    enabled: bool = Field(False, description="Condition on ROOT/manifest.json labels.")
    num_classes: int | None = Field(None, ge=1, description="Number of classes (default: from the manifest).")
    label_dropout: float = Field(0.1, ge=0.0, le=1.0, description="Probability of training a sample unconditionally (CFG).")
    guidance_scale: float = Field(
        1.0, ge=0.0, description="Default --guidance-scale at sampling (1 = plain conditional, the distribution the "
                                 "model learned; above 1 trades variety for typical samples: on 128 anatomical "
                                 "shapes 3 gave COV 28% vs 56% and 1-NNA 73% vs 47% at 1, docs/diffusion.md).")


class DiffusionSampleConfig(StrictModel):
    scheduler: Literal["auto", "ddpm", "ddim", "rflow"] = Field("auto", description="Default sampler (auto: ddim for noise.objective=ddpm, rflow for rflow).")
    steps: int = Field(50, ge=1, description="Default sampling steps (DDPM: num_train_timesteps is the classic choice).")
    num_images: int = Field(2, ge=1, description="Samples decoded for TensorBoard at each image step.")
    clip_to_data_range: bool = Field(True, description="Clip decoded samples to the training data's value range ([0, 1] for data.intensity=minmax; otherwise the min/max of up to 16 training volumes, recorded when training starts).")


class DiffusionOptimizerConfig(StrictModel):
    lr: float = Field(1e-4, gt=0.0, description="Adam learning rate of the UNet.")


@with_defaults(batch_size=2, ema={"enabled": True, "decay": 0.999})
class DiffusionTrainerConfig(TrainerConfig):
    """Trainer defaults: batch 2, EMA on."""


class DiffusionConfig(FamilyConfig):
    """``medgen train diffusion``: a latent DiffusionModelUNet on a trained autoencoder run."""

    family: Literal["diffusion"] = "diffusion"
    autoencoder_run: str | None = Field(None, description="The trained autoencoder run (runs/autoencoder/NAME); its best (EMA) weights are used.")
    autoencoder_checkpoint: Literal["best", "latest"] = Field("best", description="Which checkpoint of the autoencoder run (falls back to latest when best.pt is missing).")
    autoencoder: AutoencoderConfig | None = Field(None, description="The autoencoder run's resolved config, copied in when training starts (with its weights in every checkpoint), so this run samples and resumes without the autoencoder run folder.")
    scale_factor: float | None = Field(None, gt=0.0, description="Latent scale factor (default: 1/std of the first training batch's latents).")
    trainer: DiffusionTrainerConfig = Field(default_factory=DiffusionTrainerConfig)
    data: LatentDataConfig = Field(default_factory=LatentDataConfig)
    unet: UNetConfig = Field(default_factory=UNetConfig)
    noise: NoiseScheduleConfig = Field(default_factory=NoiseScheduleConfig)
    conditioning: ConditioningConfig = Field(default_factory=ConditioningConfig)
    sample: DiffusionSampleConfig = Field(default_factory=DiffusionSampleConfig)
    optimizer: DiffusionOptimizerConfig = Field(default_factory=DiffusionOptimizerConfig)

    @model_validator(mode="after")
    def _sampler_fits_objective(self) -> "DiffusionConfig":
        ok = {"ddpm": ("auto", "ddpm", "ddim"), "rflow": ("auto", "rflow")}[self.noise.objective]
        if self.sample.scheduler not in ok:
            raise ValueError(f"sample.scheduler={self.sample.scheduler} cannot sample noise.objective="
                             f"{self.noise.objective}; use {' or '.join(ok)}")
        return self
