"""The family registry moved to :mod:`medgen_cli.contract.registry` (kept importable here)."""

from __future__ import annotations

from medgen_cli.contract.registry import FamilySpec, all_specs, get_spec, register

__all__ = ["FamilySpec", "all_specs", "get_spec", "register"]
