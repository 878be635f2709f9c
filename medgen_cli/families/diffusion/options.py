"""What ``medgen sample`` / ``interpolate`` accept for a diffusion run (checked against the run).
Pure pydantic: imports without torch."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, model_validator

from medgen_cli.contract.options import FamilyOptions, VolumeInterpolateOptions, VolumeSampleOptions, run_family


class DiffusionSampleOptions(VolumeSampleOptions):
    """Sampling a latent diffusion run (defaults: the run's ``sample.scheduler``/``sample.steps``
    and ``conditioning.guidance_scale``; classes cycle 0, 1, ... when no label is given)."""

    scheduler: str | None = Field(None, description="Sampler (default: the run's sample.scheduler).")
    steps: int | None = Field(None, ge=1, description="Sampling steps (default: the run's sample.steps).")
    guidance_scale: float | None = Field(None, ge=0.0, description="Classifier-free guidance (conditional runs).")
    class_label: int | None = Field(None, ge=0, description="Class of every sample (conditional runs).")

    @model_validator(mode="after")
    def _fits_the_run(self, info: ValidationInfo) -> "DiffusionSampleOptions":
        fam = run_family(info)
        if fam is not None:
            fam.check_request(self.scheduler, self.steps, self.guidance_scale, self.class_label)
        return self


class DiffusionInterpolateOptions(VolumeInterpolateOptions):
    """Interpolating a diffusion run: slerp/lerp of two seeds' starting noise, decoded with a
    deterministic sampler (default: DDIM, or rflow for rflow runs); conditional runs use the "no class" label."""

    scheduler: str | None = Field(None, description="Sampler (default: the deterministic one of the run's objective, ddim or rflow).")
    sample_steps: int | None = Field(None, ge=1, description="Sampling steps per frame.")

    @model_validator(mode="after")
    def _fits_the_run(self, info: ValidationInfo) -> "DiffusionInterpolateOptions":
        fam = run_family(info)
        if fam is not None:
            fam.check_request(self.scheduler, self.sample_steps, None, None)
        return self


OPTIONS = FamilyOptions(sample=DiffusionSampleOptions, interpolate=DiffusionInterpolateOptions)
