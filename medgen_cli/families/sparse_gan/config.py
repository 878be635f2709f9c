"""Config of the sparse 3D GAN (pure pydantic: imports without torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medgen_cli.contract.config import FamilyConfig, GANOptimizerConfig, StrictModel, TrainerConfig, with_defaults


class SparseBackendConfig(StrictModel):
    """Which sparse-tensor backend runs the networks."""

    backend: Literal["auto", "minkowski", "torch"] = Field(
        "auto", description="auto = MinkowskiEngine when it imports (and runs on the device), else pure PyTorch.")


class SparseGANData(StrictModel):
    """Volumes from `medgen data convert-h5` (ROOT/train/*.nii.gz), made sparse by threshold."""

    root: str = Field("data/volumes", description="Folder with train/ (and optionally val/) NIfTI volumes.")
    voxel_size: int = Field(64, ge=4, description="Volumes are resized to voxel_size³.")
    threshold: float = Field(0.1, description="Voxels with value > threshold become sparse points.")
    min_voxels: int = Field(100, ge=0, description="A volume with fewer voxels keeps its min_voxels brightest.")
    intensity: Literal["none", "minmax"] = Field(
        "none", description="Scaling before thresholding (convert-h5 output is already [0, 1]).")
    flip: bool = Field(False, description="Random flips along each axis.")
    cache_rate: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of volumes cached in memory.")
    cache_max_gb: float = Field(2.0, ge=0.0, description="At most this many GiB of cached volumes per machine (split between its DDP processes; train and val each).")


class SparseGenerator(StrictModel):
    """latent → linear → init_size³ grid → one ×2 sparse upsampling per channel step → 1 channel."""

    kind: Literal["sparse", "dense"] = Field(
        "sparse", description="sparse: prunes to a voxel budget at every level; dense: the classic 3D-GAN "
                              "(ConvTranspose3d on the full grid, the baseline; needs discriminator.kind=dense).")
    latent_dim: int = Field(256, ge=1, description="Size of z.")
    init_size: int = Field(4, ge=1, description="Edge of the first (dense) grid.")
    channels: list[int] = Field([256, 128, 64, 32, 16], min_length=2,
                                description="Channels per resolution; len-1 upsamplings.")
    max_voxels: int = Field(8192, ge=1, description="Voxel budget per sample at full resolution.")
    occupancy_threshold: float = Field(0.5, gt=0.0, lt=1.0,
                                       description="Children with occupancy above it are kept.")
    parent_slack: float = Field(2.0, ge=1.0,
                                description="Coarser levels keep up to slack·max_voxels/4^levels_below voxels "
                                            "(8^levels_below with budget_scaling=volume).")
    budget_scaling: Literal["surface", "volume"] = Field(
        "surface", description="How the budget shrinks per coarser level: surface (÷4 per halving, as the "
                               "cells a surface crosses; point clouds are surfaces) or volume (÷8, as a solid's; "
                               "on surfaces it drops coarse cells the data occupy, leaving cubic holes).")
    norm: Literal["batch", "pixel"] = Field(
        "batch", description="Normalisation in every upsampling block: batch (statistics over the batch's "
                             "voxels; running averages at sampling) or pixel (each voxel's features to unit "
                             "RMS: identical in training and sampling, whatever the number of kept voxels).")
    output: Literal["value", "occupancy"] = Field(
        "value", description="value: each kept voxel carries a learned value in (0, 1) (density/intensity data); "
                             "occupancy: exactly 1 like binary data (straight-through: the gradient reaches the "
                             "occupancy probability), so the critic cannot tell fakes by their values alone.")


class SparseDiscriminator(StrictModel):
    """Strided convolutions → (minibatch std) → linear: dense on the rendered grid, or sparse."""

    kind: Literal["dense", "sparse"] = Field(
        "dense", description="dense: sees the generated structure on the full grid (every voxel, present or not, "
                             "is an input, so penalties act on all of them and the generator's keep/drop "
                             "decisions get a straight-through gradient); sparse: sees only existing voxels.")
    mbstd_group: int = Field(4, ge=0, description="dense critic: minibatch-std group size (0 = off).")
    channels: list[int] = Field([16, 32, 64, 128, 256], min_length=1, description="One stride-2 conv per entry.")
    kernel_size: int = Field(3, ge=2, le=3, description="Kernel of the strided convs (2 or 3).")
    pooling: Literal["mean", "sum", "max"] = Field("mean", description="sparse critic: global pooling per sample.")


class SparseGANLoss(StrictModel):
    """Adversarial objective."""

    gan_type: Literal["wgan-gp", "vanilla", "lsgan", "hinge"] = Field(
        "vanilla", description="Loss family (vanilla = non-saturating; wgan-gp was the seed scripts' default).")
    n_critic: int = Field(5, ge=1, description="D updates per G update: D every step, G every n_critic-th step.")
    gradient_penalty_weight: float = Field(10.0, ge=0.0, description="wgan-gp: weight of the gradient penalty.")
    r1_weight: float = Field(10.0, ge=0.0, description="dense critic: R1 weight γ (γ/2·E‖∇D(real)‖², every voxel); 0 = off.")
    r1_interval: int = Field(4, ge=1, description="Lazy R1 (StyleGAN2): computed on every N-th critic step with weight ×N (the same average pull, without its double backward on the other steps); 1 = every step.")


@with_defaults(lr_g=1e-4, lr_d=1e-4, betas=(0.5, 0.9))
class SparseGANOptimizer(GANOptimizerConfig):
    """Adam for both players (optimizers ``g`` and ``d``)."""


@with_defaults(max_steps=20000, ema={"enabled": True})
class SparseGANTrainerConfig(TrainerConfig):
    """Trainer defaults: 20k steps, EMA of G on."""


class SparseGANValidation(StrictModel):
    """Shape metrics at each validation; best.pt keeps the step whose 1-NNA is closest to 50%."""

    num_samples: int = Field(16, ge=0, description="Generated (fixed seeds) and real (first val) shapes compared; 0 = off.")
    num_points: int = Field(512, ge=8, description="Points per shape for the Chamfer distance.")


class SparseGANConfig(FamilyConfig):
    """`medgen train sparse-gan`: sparse 3D GAN whose generator prunes to a voxel budget."""

    family: Literal["sparse-gan"] = "sparse-gan"
    trainer: SparseGANTrainerConfig = Field(default_factory=SparseGANTrainerConfig)
    sparse: SparseBackendConfig = Field(default_factory=SparseBackendConfig)
    data: SparseGANData = Field(default_factory=SparseGANData)
    generator: SparseGenerator = Field(default_factory=SparseGenerator)
    discriminator: SparseDiscriminator = Field(default_factory=SparseDiscriminator)
    loss: SparseGANLoss = Field(default_factory=SparseGANLoss)
    optimizer: SparseGANOptimizer = Field(default_factory=SparseGANOptimizer)
    validation: SparseGANValidation = Field(default_factory=SparseGANValidation)

    @model_validator(mode="after")
    def _check_sizes(self) -> SparseGANConfig:
        ups = len(self.generator.channels) - 1
        if self.generator.init_size * 2**ups != self.data.voxel_size:
            raise ValueError(
                f"generator.init_size·2^(len(channels)-1) = {self.generator.init_size * 2**ups} must equal "
                f"data.voxel_size = {self.data.voxel_size}")
        if 2 ** len(self.discriminator.channels) > self.data.voxel_size:
            raise ValueError("discriminator has more stride-2 convs than data.voxel_size allows")
        if self.generator.kind == "dense" and self.discriminator.kind != "dense":
            raise ValueError("generator.kind=dense needs discriminator.kind=dense")
        if self.loss.r1_weight > 0 and self.discriminator.kind != "dense":
            raise ValueError("loss.r1_weight needs discriminator.kind=dense (R1 acts on every voxel of the grid); "
                             "set loss.r1_weight=0 with the sparse critic")
        return self
