"""Build a family's config: defaults ← a saved config ← a YAML file ← ``--set`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medgen_cli.contract.config import FamilyConfig
from medgen_cli.config.loading import apply_overrides, load_yaml, validate_config
from medgen_cli.config.migrations import VERSION_KEY, migrate_override, print_notes, read_saved_config
from medgen_cli.errors import MedgenError


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``a`` updated by ``b``; nested mappings are merged key by key, anything else replaced."""
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def current_overrides(family: str, overrides: list[str]) -> list[str]:
    """``--set`` overrides with keys renamed since they were written (one note per old key)."""
    out, notes = [], []
    for text in overrides:
        key, eq, value = text.partition("=")
        new, note = migrate_override(family, key.strip()) if eq else (key, None)
        out.append(f"{new}={value}" if note else text)
        notes += [note] if note else []
    print_notes(notes)
    return out


def build_config(family: str, config_file: str | Path | None = None, overrides: list[str] | None = None,
                 base: dict[str, Any] | None = None) -> FamilyConfig:
    """The validated config of ``family``.

    Args:
        family: a registered family name.
        config_file: a YAML file (optional).
        overrides: ``a.b=value`` strings applied last.
        base: a config saved by a run (``config.yaml`` or a checkpoint's), already migrated to
            this medgen's layout (see :mod:`medgen_cli.config.migrations`).

    Raises:
        MedgenError: an unknown family, a file for another family, or any invalid key/value.
    """
    from medgen_cli.contract.registry import get_spec

    spec = get_spec(family)
    data: dict[str, Any] = dict(base or {})
    if config_file is not None:
        # A run's config.yaml is a valid --config too: its version stamp is read and older layouts
        # migrated. A file without a stamp is the user's own: old key names are renamed, but keys
        # it leaves out take this medgen's defaults (not the old behaviour a saved run keeps).
        raw = load_yaml(config_file)
        data = deep_merge(data, read_saved_config(raw, added=VERSION_KEY in raw))
    data = apply_overrides(data, current_overrides(spec.name, overrides or []))
    file_family = data.get("family")
    if file_family is not None and get_spec(str(file_family)).name != spec.name:
        raise MedgenError(f"the config is for family '{file_family}', not '{spec.name}'",
                          f"use medgen train {file_family}, or another --config")
    data["family"] = spec.name
    return validate_config(spec.config_class(), data)
