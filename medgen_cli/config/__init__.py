"""Typed configuration: pydantic models, YAML loading, ``--set a.b=c`` overrides, strict keys."""

from __future__ import annotations

from medgen_cli.contract.config import (
    EMAConfig,
    FamilyConfig,
    LRScheduleConfig,
    StrictModel,
    TrainerConfig,
)
from medgen_cli.config.loading import (
    RESUME_MUTABLE_KEYS,
    apply_overrides,
    check_resume_changes,
    dump_config,
    load_yaml,
    parse_override,
    validate_config,
)

__all__ = [
    "EMAConfig",
    "FamilyConfig",
    "LRScheduleConfig",
    "RESUME_MUTABLE_KEYS",
    "StrictModel",
    "TrainerConfig",
    "apply_overrides",
    "check_resume_changes",
    "dump_config",
    "load_yaml",
    "parse_override",
    "validate_config",
]
