"""The inference half of the family contract: typed options in, arrays plus metadata out.

Each family that samples, interpolates or reconstructs declares one small pydantic model per
task (subclassing :class:`SampleOptions`, :class:`InterpolateOptions` or :class:`ReconOptions`)
holding exactly the options it honours, with its own defaults. Anything else a caller passes is
rejected by :func:`parse_options` with one line (``stylegan2 runs do not take --guidance-scale``),
never silently ignored. The family's method returns :class:`~medgen_cli.contract.samples.Samples`;
writing files is shared code (:mod:`medgen_cli.engine.outputs`). A family lists its models in
its ``options.py`` as a :class:`FamilyOptions`; the CLI generates its flags from them.

``steps`` means sampler steps wherever it appears; interpolation's frame count is ``frames``
(``steps`` there is its old name, renamed by :func:`rename_options` with a note).

Seeds: sample ``i`` of a request with ``seed=s`` is generated from seed ``s + i`` alone (see
:mod:`medgen_cli.families.latents`), so a sample never depends on how many were asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from medgen_cli.errors import MedgenError

#: File formats the shared writers know (suffix per format).
FORMAT_SUFFIXES = {"nifti": ".nii.gz", "npy": ".npy", "png": ".png", "points": ".ply"}
VOLUME_FORMATS = ("nifti", "npy", "png", "points")
IMAGE_FORMATS = ("png", "npy")

O = TypeVar("O", bound="InferenceOptions")


class InferenceOptions(BaseModel):
    """Base of every options model: unknown fields are errors, values are validated.

    Class attributes a subclass sets:
        formats: the output formats this family can write (``--format``).
    A subclass overrides the ``format`` default (a tuple: a comma list writes one subfolder
    per format).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    formats: ClassVar[tuple[str, ...]] = VOLUME_FORMATS
    format: tuple[str, ...] = Field(("nifti",), description="Output format(s); a comma list writes a subfolder each.")

    @field_validator("format", mode="before")
    @classmethod
    def _split_formats(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @model_validator(mode="after")
    def _known_formats(self) -> "InferenceOptions":
        bad = [f for f in self.format if f not in self.formats]
        if bad or not self.format:
            raise ValueError(f"--format {','.join(self.format) or '(empty)'} is not available here; "
                             f"use one of {', '.join(self.formats)}")
        if len(set(self.format)) != len(self.format):
            raise ValueError(f"--format {','.join(self.format)} repeats a format")
        return self


class PointsThreshold(InferenceOptions):
    """Mixin for volume outputs: the voxel threshold of ``--format points``."""

    threshold: float = Field(0.5, description="Voxels above this value become points (--format points).")

    @model_validator(mode="after")
    def _threshold_needs_points(self) -> "PointsThreshold":
        if "threshold" in self.model_fields_set and "points" not in self.format:
            raise ValueError("--threshold only applies to --format points")
        return self


class SampleOptions(InferenceOptions):
    """``medgen sample``: how many samples from which seeds, generated how many at once."""

    num: int = Field(8, ge=1, description="Number of samples.")
    seed: int = Field(0, ge=0, description="Sample i comes from seed + i.")
    batch_size: int = Field(4, ge=1, description="Samples generated at once (does not change them).")


class InterpolateOptions(InferenceOptions):
    """``medgen interpolate``: frames between the samples of two seeds (both endpoints included)."""

    seed_a: int = Field(0, ge=0, description="Seed of the first endpoint.")
    seed_b: int = Field(1, ge=0, description="Seed of the last endpoint.")
    frames: int = Field(8, ge=2, description="Number of frames, both endpoints included.")
    method: Literal["slerp", "lerp"] = Field("slerp", description="Path between the two latents.")


class ReconOptions(InferenceOptions):
    """``medgen sample --input`` (and ``medgen recon``): reconstruct one input file."""

    #: The command a user is pointed to for this kind of reconstruction.
    command: ClassVar[str] = "medgen sample RUN --input FILE"
    input: Path = Field(..., description="The file to reconstruct.")


class VolumeSampleOptions(PointsThreshold, SampleOptions):
    """Sampling options of families that generate volumes (NIfTI by default)."""


class VolumeInterpolateOptions(PointsThreshold, InterpolateOptions):
    """Interpolation options of families that generate volumes (NIfTI by default)."""


@dataclass(frozen=True)
class FamilyOptions:
    """A family's options models, one per task it can do (``None``: it cannot). Each family's
    ``options.py`` defines one as ``OPTIONS``, which its registry entry names, so the CLI builds
    its flags from every family's models without importing a family (or torch)."""

    sample: type[SampleOptions] | None = None
    interpolate: type[InterpolateOptions] | None = None
    recon: type[ReconOptions] | None = None

    def for_task(self, task: str) -> type[InferenceOptions] | None:
        """The model of ``task`` (``sample``, ``interpolate`` or ``recon``)."""
        models: dict[str, type[InferenceOptions] | None] = {
            "sample": self.sample, "interpolate": self.interpolate, "recon": self.recon}
        return models[task]


#: Options renamed per task, old name -> new name. The old name still works, with a note.
RENAMED: dict[str, dict[str, str]] = {"interpolate": {"steps": "frames"}}


def rename_options(task: str, flags: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``flags`` with renamed options under their new names, and the ``(old, new)`` pairs used
    (callers tell the user: a note on the CLI, a ``FutureWarning`` in Python).

    Raises:
        MedgenError: both the old and the new name were given.
    """
    out, used = dict(flags), []
    for old, new in RENAMED.get(task, {}).items():
        if old not in out:
            continue
        if new in out:
            raise MedgenError(f"{_flag([old])} is the old name of {_flag([new])} ({task}); give {_flag([new])} only")
        out[new] = out.pop(old)
        used.append((old, new))
    return out, used


class OptionsOwner(Protocol):
    """What :func:`parse_options` reads of a family (a :class:`~medgen_cli.contract.family.Family`)."""

    name: str


def _flag(loc: Sequence[Any]) -> str:
    return "--" + str(loc[0]).replace("_", "-") if loc else "options"


def parse_options(model: type[O] | None, flags: dict[str, Any], family: OptionsOwner, task: str,
                  hint: str | None = None) -> O:
    """Validate ``flags`` (only the ones the caller set) against a family's options model.

    Args:
        model: the family's options class for ``task`` (``None``: the family cannot do it).
        flags: option name → value, e.g. ``{"num": 4, "guidance_scale": 2.0}``.
        family: the loaded family (passed to validators as ``context["family"]`` for checks that
            depend on the run, e.g. guidance on an unconditional model).
        task: ``sample``, ``interpolate`` or ``recon`` (for messages).
        hint: what to do instead when the family cannot do ``task``.

    Raises:
        MedgenError: the family cannot do ``task``, or one line naming the first bad flag.
    """
    name = family.name
    if model is None:
        raise MedgenError(f"'{name}' runs cannot {task}", hint)
    try:
        return model.model_validate(flags, context={"family": family})
    except ValidationError as exc:
        err = exc.errors()[0]
        accepted = ", ".join(_flag([f]) for f in model.model_fields)
        if err["type"] == "extra_forbidden":
            raise MedgenError(f"{name} runs do not take {_flag(err['loc'])} ({task})",
                              f"{task} options for this run: {accepted}") from None
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = f"{_flag(err['loc'])}: " if err["loc"] else ""
        raise MedgenError(f"{where}{msg}".splitlines()[0]) from None


def run_family(info: ValidationInfo | None) -> Any:
    """The :class:`~medgen_cli.contract.family.Family` a validator runs for (``None`` when
    validated without one)."""
    return (info.context or {}).get("family") if info is not None else None
