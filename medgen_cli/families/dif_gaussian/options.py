"""What ``medgen recon`` (and :meth:`medgen_cli.api.Run.reconstruct`) accept for a dif-gaussian run
(checked against the run: the view counts it was trained for)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, ValidationInfo, model_validator

from medgen_cli.contract.options import FamilyOptions, ReconOptions, run_family
from medgen_cli.families.dif_gaussian.config import QUERY_CHUNK


class DIFReconOptions(ReconOptions):
    """Reconstructing one case file or CT volume with a dif-gaussian run."""

    formats = ("nifti", "npy")
    command: ClassVar[str] = "medgen recon RUN --input CASE.h5 --views N"
    format: tuple[str, ...] = ("nifti",)
    views: int | None = Field(None, ge=1, description="Projections to use (default: the run's largest).")
    chunk: int = Field(QUERY_CHUNK, ge=1, description="Points per forward pass (lower it if memory runs out).")

    @model_validator(mode="after")
    def _fits_the_run(self, info: ValidationInfo) -> "DIFReconOptions":
        fam = run_family(info)
        if fam is not None and self.views is not None:
            fam.check_views(self.views)
        if not str(self.input).lower().endswith((".h5", ".hdf5", ".nii", ".nii.gz")):
            raise ValueError(f"unsupported input {self.input}; give a case .h5 from make-cbct or a .nii/.nii.gz volume")
        return self


OPTIONS = FamilyOptions(recon=DIFReconOptions)
