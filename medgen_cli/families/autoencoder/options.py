"""What ``medgen sample AE_RUN --input FILE`` (and ``medgen recon``, :meth:`medgen_cli.api.Run.reconstruct`)
accept for an autoencoder run (checked against the run: tile sizes its downsampling divides).
Pure pydantic: imports without torch."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from medgen_cli.contract.options import FamilyOptions, PointsThreshold, ReconOptions, run_family
from medgen_cli.families.autoencoder.tiles import check_tile, downsampling


class AutoencoderReconOptions(PointsThreshold, ReconOptions):
    """Reconstructing one volume (or 2D image) file: ``medgen sample AE_RUN --input FILE``."""

    resize: bool = Field(True, description="Resize the input to the run's data.size first (default); "
                                           "--no-resize keeps the input's own voxel grid (3D).")
    tile: tuple[int, ...] | None = Field(None, description="Tile size in voxels, one number or one per axis "
                                                           "(default: the run's data.size, the training size).")
    overlap: float = Field(0.25, ge=0.0, lt=1.0, description="Fraction of a tile shared with its neighbour.")

    @field_validator("tile", mode="before")
    @classmethod
    def _split_tile(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
            except ValueError:
                raise ValueError(f"--tile takes whole numbers such as 64 or 64,64,32, not {value!r}") from None
        if isinstance(value, int):
            return (value,)
        return value

    @model_validator(mode="after")
    def _fits_the_run(self, info: ValidationInfo) -> "AutoencoderReconOptions":
        fam = run_family(info)
        if fam is not None:
            cfg = fam.cfg
            if not self.resize and cfg.data.spatial_dims == 2:
                raise ValueError("--no-resize is for volumes; 2D runs read images at their data.size")
            if self.tile is not None:
                check_tile(self.tile, cfg.data.spatial_dims, downsampling(len(cfg.model.channels)))
        return self


OPTIONS = FamilyOptions(recon=AutoencoderReconOptions)
