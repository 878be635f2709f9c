"""The config models shared by every family moved to :mod:`medgen_cli.contract.config` (kept
importable here)."""

from __future__ import annotations

from medgen_cli.contract.config import EMAConfig, FamilyConfig, LRScheduleConfig, StrictModel, TrainerConfig

__all__ = ["EMAConfig", "FamilyConfig", "LRScheduleConfig", "StrictModel", "TrainerConfig"]
