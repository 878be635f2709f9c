"""The metric-name scheme moved to :mod:`medgen_cli.contract.metric_names` (kept importable here)."""

from __future__ import annotations

from medgen_cli.contract.metric_names import GROUPS, ROLES, is_train_metric, is_val_metric, shares

__all__ = ["GROUPS", "ROLES", "is_train_metric", "is_val_metric", "shares"]
