"""Config models shared by every family.

A family's config subclasses :class:`FamilyConfig` and adds its own sections (``data``,
``model``, ``loss`` ...). Every model is strict: unknown keys are rejected, so a typo never
silently falls back to a default. A family that wants other defaults for a shared section gets
a subclass from :func:`with_defaults` (the one mechanism; see ``medgen_cli/config/NAMING.md``).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic_core import PydanticUndefined

from medgen_cli.devices import DEVICE_CHOICES, check_device_spec
from medgen_cli.errors import MedgenError


class StrictModel(BaseModel):
    """Base for all config sections: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class EMAConfig(StrictModel):
    """Exponential moving average of the modules a family names in ``ema_modules``."""

    enabled: bool = Field(False, description="Keep an EMA copy; validation, sampling and best.pt use it.")
    decay: float = Field(0.999, ge=0.0, le=1.0, description="EMA decay per optimizer step.")
    start_step: int = Field(0, ge=0, description="Copy the online weights until this step, then average.")
    warmup: bool = Field(
        True, description="Decay min(decay, (1+n)/(10+n)) at update n (diffusers' EMAModel rule) instead of a fixed "
                          "decay from the first step: a fixed 0.999 still holds 29% of the random initial weights at "
                          "step 1,250, where a diffusion model on a few hundred shapes has its best.pt.")


M = TypeVar("M", bound=BaseModel)


def _model_type(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _derive(base: type[M], name: str, doc: str | None, defaults: dict[str, Any]) -> type[M]:
    fields: dict[str, Any] = {}
    for key, value in defaults.items():
        if key not in base.model_fields:
            raise KeyError(f"{base.__name__} has no field {key!r}")
        info = copy.copy(base.model_fields[key])
        annotation: Any = info.annotation
        nested = _model_type(annotation)
        if isinstance(value, dict) and nested is not None:
            annotation = _derive(nested, f"{name}_{key}", nested.__doc__, value)
            info.default, info.default_factory = PydanticUndefined, annotation
        else:
            info.default, info.default_factory = value, None
        fields[key] = (annotation, info)
    model = create_model(name, __base__=base, __doc__=doc, **fields)
    model.__module__, model.__qualname__ = base.__module__, base.__qualname__
    return model


def with_defaults(**defaults: Any) -> Callable[[type[M]], type[M]]:
    """Class decorator: the one way a family changes the defaults of a shared section.

    ``@with_defaults(max_steps=50_000, ema={"enabled": True})`` on ``class X(TrainerConfig)``
    makes ``X``'s fields default to those values (a mapping for a nested section changes that
    section's defaults). Constraints and descriptions stay the base's. The defaults live in the
    schema, so a partial mapping (``trainer: {batch_size: 2}``) keeps the family's other
    defaults, and ``medgen train <family> --help`` shows them. A class body adds fields; it does
    not repeat a field only to change its default.

    Raises:
        KeyError: a name that is not a field of the class.
    """

    def derive(cls: type[M]) -> type[M]:
        return _derive(cls, cls.__name__, cls.__doc__, defaults)

    return derive


class LRScheduleConfig(StrictModel):
    """Learning-rate schedule applied by the trainer to every optimizer a family builds."""

    warmup_steps: int = Field(0, ge=0, description="Linear LR warm-up length in steps.")
    skip_warmup: bool = Field(False, description="Skip warm-up (e.g. when starting from pretrained weights).")
    kind: Literal["constant", "cosine", "step", "exponential"] = Field(
        "constant", description="LR schedule after warm-up."
    )
    step_size: int = Field(1000, ge=1, description="'step' schedule: multiply the LR by gamma every N steps.")
    gamma: float = Field(0.5, gt=0.0, description="'step'/'exponential' decay factor (exponential: per step).")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="'cosine' floor as a fraction of the base LR.")
    plateau_patience: int = Field(
        0, ge=0, description="Multiply every LR by plateau_factor after N evaluations of the key metric in a row "
        "without a new best.pt (ReduceLROnPlateau on top of the schedule; the counter restarts after each cut "
        "and at each new best); 0 = off."
    )
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0, description="LR factor of each plateau cut.")
    plateau_min_factor: float = Field(0.01, ge=0.0, le=1.0, description="Plateau cuts stop at this share of the scheduled LR.")


class BestConfig(StrictModel):
    """How best.pt is chosen: the best key metric (FID, PSNR ...) among evaluations whose guard metric
    clears a floor (see medgen_cli/engine/selection.py)."""

    guard: str | None = Field(
        None, description="Validation metric (higher is better, e.g. coverage) that an evaluation must keep for "
        "best.pt: at least max(guard_min, guard_fraction x its highest value so far in the run). A best.pt "
        "left under a risen floor is replaced by the next evaluation that clears it. null = no guard."
    )
    guard_fraction: float = Field(0.5, ge=0.0, le=1.0, description="Floor as a share of the guard's highest value so far.")
    guard_min: float = Field(0.0, description="Absolute floor of the guard.")


class TrainerConfig(StrictModel):
    """Settings of the shared trainer (the loop, cadence, checkpoints, precision, devices)."""

    max_steps: int = Field(1000, ge=1, description="Stop after this many optimizer steps.")
    max_epochs: int | None = Field(None, ge=1, description="Also stop after this many epochs (optional).")
    batch_size: int = Field(4, ge=1, description="Batch size per process.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    device: str = Field("auto", description=f"{DEVICE_CHOICES}.")
    seed: int = Field(0, description="Seed for python, numpy and torch.")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision: auto = bf16 (or fp16) on CUDA; on a CPU bf16 for families measured "
        "with it (fastgan) where the CPU has native bf16 (AVX512_BF16/AMX), else off."
    )
    grad_clip: float | None = Field(None, gt=0.0, description="Clip the gradient norm of each optimizer's parameters.")
    channels_last: bool = Field(
        False, description="Keep 4-D weights (and so the activations of 2D convolutions) channels-last: "
        "~15% faster 2D GAN training on CPUs (oneDNN). Same results up to float rounding."
    )
    ema: EMAConfig = Field(default_factory=EMAConfig)
    lr_schedule: LRScheduleConfig = Field(default_factory=LRScheduleConfig)
    log_every: int = Field(10, ge=1, description="Write scalars to TensorBoard/metrics.jsonl every N steps.")
    val_every: int = Field(500, ge=1, description="Run validation (and update best.pt) every N steps.")
    best: BestConfig = Field(default_factory=BestConfig)
    early_stop_patience: int = Field(
        0, ge=0, description="Stop after N evaluations of the key metric in a row without a new best.pt; 0 = off."
    )
    ckpt_every: int = Field(500, ge=1, description="Write latest.pt and step_N.pt every N steps.")
    image_every: int = Field(500, ge=1, description="Let the family log images every N steps.")
    keep_last: int = Field(3, ge=0, description="Keep only the newest N step_N.pt files (0 = keep none).")
    fast_dev_run: bool = Field(False, description="Run a few train/val batches in a temporary directory; keep nothing.")
    fast_dev_run_batches: int = Field(2, ge=1, description="Batches for fast_dev_run.")
    val_batches: int | None = Field(None, ge=1, description="Limit validation to N batches.")

    @field_validator("amp", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted `off` as false: `--set trainer.amp=off` and `amp: off` mean "off".
        return "off" if value is False else value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        # Spelling only (no torch import); whether the machine has it is checked when training starts.
        try:
            return check_device_spec(value, "trainer.device")
        except MedgenError:
            raise ValueError(f"unknown device, use {DEVICE_CHOICES}") from None


class GANOptimizerConfig(StrictModel):
    """Adam for the two players of an adversarial family (optimizers ``g`` and ``d``)."""

    lr_g: float = Field(1e-4, gt=0.0, description="Generator learning rate.")
    lr_d: float = Field(1e-4, gt=0.0, description="Discriminator learning rate.")
    betas: tuple[float, float] = Field((0.5, 0.9), description="Adam betas.")


class FamilyConfig(StrictModel):
    """Top-level config of a run. Families subclass this and add their own sections."""

    family: str = Field(..., description="Registered family name.")
    name: str | None = Field(None, description="Run name; auto-numbered when empty.")
    output_dir: str = Field("runs", description="Runs are written to OUTPUT_DIR/<family>/<name>.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
