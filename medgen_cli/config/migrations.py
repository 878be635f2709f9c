"""Config migrations: a config saved by an older medgen still loads after keys were renamed.

Runs store their resolved config (``config.yaml`` and inside every checkpoint) stamped with the
medgen version that wrote it (``medgen_version``). Loading validates strictly, so a renamed key
would make every older run unloadable; instead, :data:`MIGRATIONS` lists, per medgen version,
the keys that were renamed or removed, and :func:`migrate_config` rewrites an older config into
the current layout before validation, telling the user what changed.

Adding an entry: bump ``medgen_cli.__version__`` and append a :class:`Migration` with that
version; keys are dotted paths (``optimizer.lr_g``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from medgen_cli import __version__
from medgen_cli.errors import MedgenError

#: The key under which a saved config records the medgen version that wrote it.
VERSION_KEY = "medgen_version"
#: Configs without a stamp were written by the first release (before stamps existed).
UNSTAMPED_VERSION = "0.1.0"


@dataclass(frozen=True)
class Migration:
    """Changes of the config layout introduced in medgen ``version``.

    Attributes:
        version: the first medgen version with the new layout.
        family: the family whose config changed (``None``: every family's).
        renamed: old dotted key → new dotted key.
        removed: dotted keys that no longer exist (their values are dropped).
        added: dotted keys new in ``version`` whose default differs from the behaviour of older
            configs: an older config without the key gets this value (its old behaviour).
        why: one sentence for the user.
    """

    version: str
    family: str | None
    renamed: dict[str, str] = field(default_factory=dict)
    removed: tuple[str, ...] = ()
    added: dict[str, Any] = field(default_factory=dict)
    why: str = ""


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0.2.0", "sparse-gan", renamed={"optim": "optimizer"},
              why="sparse-gan's optimizer section is named like every other family's"),
    Migration("0.3.0", "sparse-gan", added={"discriminator.kind": "sparse", "loss.r1_weight": 0.0},
              why="the default critic is now dense with R1; runs saved before keep their sparse critic"),
    Migration("0.3.1", "sparse-gan", added={"loss.r1_interval": 1},
              why="R1 is now lazy (every 4th critic step, weight ×4) by default; runs saved before keep R1 on every step"),
)


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.10.2"`` → ``(0, 10, 2)`` (pre-release suffixes are ignored)."""
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _pop(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return False, None
    if leaf not in node:
        return False, None
    return True, node.pop(leaf)


def _put(data: dict[str, Any], dotted: str, value: Any) -> bool:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return False
    if leaf in node:  # the new key is already set: keep it, the old value is dropped
        return False
    node[leaf] = value
    return True


def _family_of(data: dict[str, Any]) -> str:
    return str(data.get("family", "")).replace("_", "-")


def migrate_config(data: dict[str, Any], version: str | None = None,
                   table: tuple[Migration, ...] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Rewrite a saved config into this medgen's layout.

    Args:
        data: the saved mapping; its ``medgen_version`` stamp (if any) is removed.
        version: the version that wrote it when the mapping has no stamp (a checkpoint's
            ``medgen_version``); neither: :data:`UNSTAMPED_VERSION`.
        table: the migrations to apply (default :data:`MIGRATIONS`).

    Returns:
        The migrated copy and one note per change (empty when nothing changed).

    Raises:
        MedgenError: the config was written by a newer medgen.
    """
    import copy

    out = copy.deepcopy(data)
    stored = str(out.pop(VERSION_KEY, None) or version or UNSTAMPED_VERSION)
    if parse_version(stored) > parse_version(__version__):
        raise MedgenError(f"this config was written by medgen {stored}, newer than this medgen {__version__}",
                          "upgrade medgen")
    notes: list[str] = []
    family = _family_of(out)
    for mig in MIGRATIONS if table is None else table:
        if parse_version(mig.version) <= parse_version(stored) or mig.family not in (None, family):
            continue
        why = f" ({mig.why})" if mig.why else ""
        for old, new in mig.renamed.items():
            found, value = _pop(out, old)
            if found:
                _put(out, new, value)
                notes.append(f"config from medgen {stored}: '{old}' is now '{new}'{why}")
        for old in mig.removed:
            found, _ = _pop(out, old)
            if found:
                notes.append(f"config from medgen {stored}: '{old}' was removed in {mig.version} and is ignored{why}")
        for key, value in mig.added.items():
            if _put(out, key, value):
                notes.append(f"config from medgen {stored}: '{key}' (new in {mig.version}) set to {value!r}{why}")
    return out, notes


def print_notes(notes: list[str]) -> None:
    """The default way notes reach the user: one line each on stderr."""
    for note in notes:
        sys.stderr.write(f"note: {note}\n")


def read_saved_config(data: dict[str, Any], version: str | None = None,
                      on_note: Callable[[list[str]], None] = print_notes) -> dict[str, Any]:
    """A saved config (from ``config.yaml`` or a checkpoint) in this medgen's layout, ready for
    strict validation; what changed is reported through ``on_note``."""
    migrated, notes = migrate_config(data, version)
    if notes:
        on_note(notes)
    return migrated


def load_run_config(path: str | Path, on_note: Callable[[list[str]], None] = print_notes) -> dict[str, Any]:
    """Read a run's ``config.yaml`` (``path`` is the file or the run folder) and migrate it."""
    from medgen_cli.config.loading import load_yaml

    p = Path(path)
    return read_saved_config(load_yaml(p / "config.yaml" if p.is_dir() else p), on_note=on_note)


def stamped(cfg: Any) -> dict[str, Any]:
    """What a run stores as its config: the resolved values and the medgen version writing them."""
    return {VERSION_KEY: __version__, **cfg.model_dump(mode="json")}


def dump_run_config(cfg: Any) -> str:
    """``config.yaml`` of a run: :func:`stamped` as YAML, keys in definition order."""
    return yaml.safe_dump(stamped(cfg), sort_keys=False)
