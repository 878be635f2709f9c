"""Family registry: the one table of families, below everything that looks a family up.

Each family registers itself in its own package ``__init__`` with *import paths*, not classes,
so that ``medgen --help`` and ``medgen train --help`` stay instant (no torch import). Built-in
families are listed in :data:`medgen_cli.families.BUILTIN`; importing :mod:`medgen_cli.families`
registers them (the CLI, the Python API and the demo do).

Like a setuptools entry point, the registry also loads *provider modules by name* on the first
lookup, so a library caller (``build_config`` in a script) finds the built-ins without importing
them first: :data:`PROVIDERS` (the built-in families package) and the modules named in the
``MEDGEN_FAMILY_MODULES`` environment variable (comma-separated; third-party or test families).
A name is a string, not an import: the registry depends on no family.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medgen_cli.errors import MedgenError

if TYPE_CHECKING:
    from medgen_cli.contract.options import FamilyOptions


@dataclass(frozen=True)
class FamilySpec:
    """What the CLI needs to know about a family without importing it.

    Attributes:
        name: registry and CLI name (``medgen train <name>``, kebab-case allowed).
        config: ``"module:Class"`` of the family's config model (must import without torch).
        family: ``"module:Class"`` of the :class:`~medgen_cli.contract.family.Family` subclass.
        help: one line for ``medgen train --help``.
        options: ``"module:OPTIONS"``, the family's
            :class:`~medgen_cli.contract.options.FamilyOptions` (its ``options.py``; must import
            without torch): the CLI builds ``sample``/``interpolate``/``recon`` flags from it.
            ``None``: the family does no inference (or a plugin that declares none).
    """

    name: str
    config: str
    family: str
    help: str
    options: str | None = None

    def config_class(self) -> Any:
        return _resolve(self.config)

    def family_options(self) -> FamilyOptions:
        """The family's options models (empty when it declares none)."""
        from medgen_cli.contract.options import FamilyOptions

        if self.options is None:
            return FamilyOptions()
        found = _resolve(self.options)
        if not isinstance(found, FamilyOptions):
            raise TypeError(f"{self.options} is not a FamilyOptions (family '{self.name}')")
        return found

    def family_class(self) -> Any:
        return _resolve(self.family)


#: Modules imported on the first lookup; each registers families when imported.
PROVIDERS: tuple[str, ...] = ("medgen_cli.families",)

_REGISTRY: dict[str, FamilySpec] = {}
_LOADED = False


def _resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def register(spec: FamilySpec) -> FamilySpec:
    """Add a family to the registry (idempotent for the same spec)."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"family '{spec.name}' is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    plugins = (m.strip() for m in os.environ.get("MEDGEN_FAMILY_MODULES", "").split(","))
    for module in (*PROVIDERS, *filter(None, plugins)):
        importlib.import_module(module)


def all_specs() -> dict[str, FamilySpec]:
    """Every registered family, built-ins first."""
    _load_all()
    return dict(_REGISTRY)


def get_spec(name: str) -> FamilySpec:
    """Look up a family by name (``sparse_gan`` and ``sparse-gan`` are the same)."""
    specs = all_specs()
    for key in (name, name.replace("_", "-"), name.replace("-", "_")):
        if key in specs:
            return specs[key]
    raise MedgenError(f"unknown family '{name}'", f"known families: {', '.join(sorted(specs)) or 'none'}")
