"""The data sections of the image families, with the data code that reads them; the families'
configs include them.

* :class:`ImageDataConfig` — volumes (3D) or images (2D) of the ``autoencoder`` and ``diffusion``
  families, read by :mod:`medgen_cli.data.datasets`: size, intensity scaling, crops, labels.
* :class:`ImageFolderConfig` — a folder of 2D images of the GAN families, read by
  :class:`medgen_cli.data.images.ImageFolderDataset`: one square resolution, grayscale or RGB.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medgen_cli.contract.config import StrictModel


class ImageDataConfig(StrictModel):
    """Volumes (3D: ``ROOT/train/*.nii.gz``, ``ROOT/val/...``) or images (2D) to train on."""

    root: str = Field("data/volumes", description="3D: folder with train/ and val/ NIfTI (from `medgen data convert-h5`); 2D: image folder (train/ and val/ optional).")
    spatial_dims: Literal[2, 3] = Field(3, description="3 for volumes, 2 for images.")
    size: list[int] = Field(default_factory=lambda: [64, 64, 64], description="Spatial size the data is resized to (spatial_dims entries).")
    intensity: Literal["minmax", "none", "zscore"] = Field("minmax", description="Per-volume intensity scaling (3D).")
    flip: bool = Field(True, description="Random flips along each axis.")
    rotate: bool = Field(False, description="Random 90 degree rotations (3D).")
    cache_rate: float = Field(0.25, ge=0.0, le=1.0, description="Fraction of volumes cached in memory after the deterministic transforms (each once it is first read; under DDP, of each process's share).")
    cache_max_gb: float = Field(2.0, ge=0.0, description="At most this many GiB of cached volumes per machine (split between its DDP processes; train and val each).")
    patch_size: list[int] | None = Field(None, description="Autoencoder training on random crops of this size (spatial_dims entries; validation and inference use whole volumes). The network is convolutional, so small patches buy many more steps per CPU minute.")
    use_labels: bool = Field(False, description="Attach class labels from ROOT/manifest.json to each item.")

    @model_validator(mode="after")
    def _size_matches_dims(self) -> "ImageDataConfig":
        if len(self.size) != self.spatial_dims:
            raise ValueError(f"data.size needs {self.spatial_dims} entries for spatial_dims={self.spatial_dims}, got {self.size}")
        if self.spatial_dims == 2 and self.size[0] != self.size[1]:
            raise ValueError("2D images are square: data.size must be [N, N]")
        if self.patch_size is not None and (len(self.patch_size) != self.spatial_dims
                                            or any(not 0 < p <= s for p, s in zip(self.patch_size, self.size))):
            raise ValueError(f"data.patch_size needs {self.spatial_dims} entries in (0, data.size], got {self.patch_size}")
        return self


class ImageFolderConfig(StrictModel):
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
