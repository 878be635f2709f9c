"""DIF-Gaussian config (pure pydantic: imports without torch).

Defaults follow the DIF-Gaussian paper on LUNA16 (MICCAI 2024); the tiny preset in
``configs/tiny/dif_gaussian.yaml`` shrinks every size for tests and the demo.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medgen_cli.contract.config import FamilyConfig, StrictModel, TrainerConfig, with_defaults

#: Points per forward pass when a whole volume is queried: 8192 keeps the point-to-Gaussian
#: distance matrix in cache (0.25 vs 0.35 s per 32³ case with 32768, one thread).
QUERY_CHUNK = 8192


class DIFGaussianData(StrictModel):
    """Case files written by ``medgen data make-cbct``."""

    root: str = Field("data/cbct", description="Folder with train/ and val/ case files (*.h5).")
    num_views: list[int] = Field(default_factory=lambda: [10], min_length=1,
                                 description="View counts trained for; each step draws one. Recon accepts only these.")
    view_sampling: Literal["even", "random"] = Field(
        "even", description="even: evenly spaced stored views with a random start; random: any distinct views.")
    points_per_case: int = Field(10000, ge=1, description="Random query points per case per step.")
    val_resolution: int = Field(128, ge=4, description="Validation grid (per side) for val/psnr (reduced resolution).")
    cache: bool = Field(True, description="Keep case files in memory after the first read.")

    @field_validator("num_views")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(n < 1 for n in v):
            raise ValueError("view counts must be ≥ 1")
        return sorted(set(v))


class DIFGaussianModel(StrictModel):
    """Network sizes."""

    encoder_channels: list[int] = Field(
        default_factory=lambda: [64, 128, 256, 512, 1024], min_length=2,
        description="2D UNet channels per level; the last level is the bottleneck (1/2^(n-1) resolution).")
    view_feature_dim: int = Field(128, ge=1, description="Channels of the full-resolution view feature map.")
    grid_size: int = Field(12, ge=2, description="Gaussians per side of the fixed grid (12³ in the paper).")
    gaussian_feature_dim: int = Field(128, ge=1, description="Feature carried by each Gaussian.")
    head_hidden: int = Field(256, ge=1, description="Hidden width of the Gaussian MLP heads.")
    k_nearest: int = Field(3, ge=1, description="Nearest Gaussians summed per query point.")
    scale_range: tuple[float, float] = Field(
        (0.25, 2.0), description="Gaussian scale bounds in grid cells (sigmoid-bounded).")
    decoder_channels: list[int] = Field(
        default_factory=lambda: [256, 256, 64, 16, 1], min_length=1,
        description="Point decoder 1x1-conv widths; the input is re-concatenated before each layer.")
    projection_scale: float | None = Field(
        None, description="Divide projections by this before the encoder (default: the volume extent in mm).")
    fdk_channels: list[int] = Field(
        default_factory=lambda: [16, 32, 64],
        description="A MONAI 3D UNet over the FDK reconstruction from the same views; its features (and the FDK "
                    "value) at each point join the decoder input. [] = off (the paper's model).")
    fdk_features: int = Field(16, ge=2, description="Channels of that UNet's output feature volume.")
    fdk_aux_weight: float = Field(
        1.0, ge=0.0, description="Weight of a dense MSE on FDK + the UNet's first channel against the whole volume.")
    carve_threshold: float = Field(
        1e-3, ge=0.0, description="Points whose ray in some view has a normalised line integral below this are "
                                  "air (visual hull): predicted 0. 0 = off.")
    consistency_blend: bool = Field(
        True, description="Reconstructions blend the point decoder with the refined FDK (FDK + UNet, when "
                          "fdk_channels is set) by the weight whose re-projection best matches the measured views: "
                          "~0.9 decoder on anatomy like the training data, less on anatomy it has not seen. "
                          "False = the decoder alone.")
    output: Literal["linear", "sigmoid"] = Field(
        "sigmoid", description="Decoder output: sigmoid keeps values in (0, 1); linear (the paper's) is clamped only at inference.")


class DIFGaussianOptimizer(StrictModel):
    """SGD with momentum (paper: lr 1e-2, momentum 0.98, weight decay 1e-3); Adam for quick tiny runs."""

    kind: Literal["sgd", "adam"] = Field(
        "sgd", description="sgd (the paper's) or adam (converges in far fewer steps on tiny CPU runs).")
    lr: float = Field(1e-2, gt=0)
    momentum: float = Field(0.98, ge=0, lt=1)
    weight_decay: float = Field(1e-3, ge=0)


@with_defaults(max_steps=100_000, batch_size=4, grad_clip=1.0, val_every=2000, ckpt_every=2000, image_every=2000,
               lr_schedule={"kind": "exponential", "gamma": 0.99993})
class DIFGaussianTrainerConfig(TrainerConfig):
    """Trainer defaults of the paper: clip 1.0; LR × (1e-3)^(1/400) per epoch, here per step over
    the default 100k steps."""


class DIFGaussianConfig(FamilyConfig):
    """Sparse-view CBCT reconstruction with a 3D Gaussian representation (DIF-Gaussian)."""

    family: Literal["dif-gaussian"] = "dif-gaussian"
    trainer: DIFGaussianTrainerConfig = Field(default_factory=DIFGaussianTrainerConfig)
    data: DIFGaussianData = Field(default_factory=DIFGaussianData)
    model: DIFGaussianModel = Field(default_factory=DIFGaussianModel)
    optimizer: DIFGaussianOptimizer = Field(default_factory=DIFGaussianOptimizer)
