"""The step and inference contexts moved to :mod:`medgen_cli.contract.context` (kept importable here)."""

from __future__ import annotations

from medgen_cli.contract.context import InferenceContext, TrainContext

__all__ = ["InferenceContext", "TrainContext"]
