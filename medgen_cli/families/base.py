"""The family contract moved to :mod:`medgen_cli.contract.family` (kept importable here)."""

from __future__ import annotations

from medgen_cli.contract.family import Family

__all__ = ["Family"]
