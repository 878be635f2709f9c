"""Config migrations: a config saved by an older medgen still loads after keys were renamed.

Runs store their resolved config (``config.yaml`` and inside every checkpoint) stamped with the
medgen version that wrote it (``medgen_version``). Loading validates strictly, so a renamed key
would make every older run unloadable; instead, :data:`MIGRATIONS` lists, per medgen version,
the keys that were renamed or removed, and :func:`migrate_config` rewrites an older config into
the current layout before validation, telling the user what changed.

Adding an entry: bump ``medgen_cli.__version__`` and append a :class:`Migration` with that
version; keys are dotted paths (``optimizer.lr_g``). The same table also serves

* a run config embedded in another (a diffusion run's ``autoencoder``: any top-level mapping with
  a ``family`` key), migrated as a config of its own family written by the same version;
* ``--set`` overrides and unstamped ``--config`` files written with old keys
  (:func:`migrate_override`), so commands and scripts keep working, with a note;
* optimizer names inside a checkpoint (``Migration.optimizers``,
  :func:`migrate_checkpoint_states`), so a resume finds each optimizer's state.

The naming rule the keys follow is ``medgen_cli/config/NAMING.md``.
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
        optimizers: old optimizer name → new, for the optimizer/scheduler/scaler states of a
            checkpoint (the config keys do not name them).
        why: one sentence for the user.
    """

    version: str
    family: str | None
    renamed: dict[str, str] = field(default_factory=dict)
    removed: tuple[str, ...] = ()
    added: dict[str, Any] = field(default_factory=dict)
    optimizers: dict[str, str] = field(default_factory=dict)
    why: str = ""


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0.2.0", "sparse-gan", renamed={"optim": "optimizer"},
              why="sparse-gan's optimizer section is named like every other family's"),
    Migration("0.3.0", "sparse-gan", added={"discriminator.kind": "sparse", "loss.r1_weight": 0.0},
              why="the default critic is now dense with R1; runs saved before keep their sparse critic"),
    Migration("0.3.1", "sparse-gan", added={"loss.r1_interval": 1},
              why="R1 is now lazy (every 4th critic step, weight ×4) by default; runs saved before keep R1 on every step"),
    Migration("0.4.0", None,
              renamed={"trainer.optim": "trainer.lr_schedule", "trainer.lr_schedule.schedule": "trainer.lr_schedule.kind"},
              why="the learning-rate schedule is named for what it is; 'optimizer' is only the optimizer section"),
    Migration("0.4.0", "dif-gaussian", renamed={"optim": "optimizer", "optimizer.optimizer": "optimizer.kind"},
              why="dif-gaussian's optimizer section is named like every other family's"),
    Migration("0.4.0", "autoencoder", renamed={"optimizer.lr": "optimizer.lr_g", "optimizer.d_lr": "optimizer.lr_d"},
              why="learning rates are lr_<optimizer> (g: the autoencoder, d: its patch discriminator), as in the GANs"),
    Migration("0.4.0", "sparse-gan", optimizers={"generator": "g", "discriminator": "d"},
              why="the optimizers are g and d in every adversarial family (lr/g, lr/d in the logs)"),
    *(Migration("0.4.0", gan, added={"trainer.best.guard": None},
                why="best.pt of a 2D GAN now needs coverage >= half its highest value; runs saved before keep "
                    "best.pt by FID alone") for gan in ("fastgan", "sagan", "stylegan2")),
    Migration("0.4.1", "sparse-gan", added={"generator.budget_scaling": "volume"},
              why="the generator's coarse budgets now shrink as a surface's cells (÷4 per level), not a solid's "
                  "(÷8, which cut holes in point-cloud shells); runs saved before keep their budgets"),
    Migration("0.4.2", "sparse-gan", renamed={"validation.ema_warmup": "trainer.ema.warmup"},
              added={"trainer.ema.warmup": True},
              why="the EMA warm-up sparse-gan always had is a trainer setting of every family now"),
    Migration("0.4.2", None, added={"trainer.ema.warmup": False},
              why="the EMA decay now warms up over the first updates; runs saved before keep a fixed decay"),
    Migration("0.4.2", "diffusion", added={"data.flip_label": False},
              why="flips are now on and told to the UNet (non-leaking augmentation); runs saved before keep theirs"),
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
                   table: tuple[Migration, ...] | None = None,
                   added: bool = True) -> tuple[dict[str, Any], list[str]]:
    """Rewrite a saved config into this medgen's layout.

    Args:
        data: the saved mapping; its ``medgen_version`` stamp (if any) is removed.
        version: the version that wrote it when the mapping has no stamp (a checkpoint's
            ``medgen_version``); neither: :data:`UNSTAMPED_VERSION`.
        table: the migrations to apply (default :data:`MIGRATIONS`).
        added: also set the ``added`` keys to their old behaviour. True for what a run saved
            (it must resume as it trained); False for a hand-written ``--config`` file without a
            stamp, whose keys are renamed but whose unset keys take this medgen's defaults (a
            new run gets the current recipe, not the first release's).

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
        for key, value in (mig.added if added else {}).items():
            if _put(out, key, value):
                notes.append(f"config from medgen {stored}: '{key}' (new in {mig.version}) set to {value!r}{why}")
    for key, value in list(out.items()):
        if isinstance(value, dict) and "family" in value:  # an embedded run config (diffusion's autoencoder)
            out[key], inner = migrate_config(value, stored, table, added)
            notes += [f"{note} [in '{key}']" for note in inner]
    return out, notes


def _applicable(family: str, since: str, table: tuple[Migration, ...] | None) -> list[Migration]:
    return [m for m in (MIGRATIONS if table is None else table)
            if parse_version(m.version) > parse_version(since) and m.family in (None, family)]


def migrate_override(family: str, key: str, table: tuple[Migration, ...] | None = None) -> tuple[str, str | None]:
    """An override key (``--set KEY=...``) written with an old name, in this medgen's layout.

    Every rename of ``family`` applies (a person or a script may use any earlier name).

    Returns:
        The key to use and a note for the user (``None`` when the key was current).
    """
    new, since = key, ""
    for mig in _applicable(family.replace("_", "-"), "0", table):
        for old, renamed in mig.renamed.items():
            if new == old or new.startswith(old + "."):
                new, since = renamed + new[len(old):], mig.version
    if new == key:
        return key, None
    return new, f"'{key}' is now '{new}' (since medgen {since}); the old name still works for now"


def migrate_checkpoint_states(ck: dict[str, Any], table: tuple[Migration, ...] | None = None) -> list[str]:
    """Rename the optimizer, scheduler and scaler states of a checkpoint in place to the optimizer
    names of this medgen (see ``Migration.optimizers``). Returns what was renamed."""
    stored = str(ck.get(VERSION_KEY) or UNSTAMPED_VERSION)
    renamed: list[str] = []
    for mig in _applicable(_family_of(ck), stored, table):
        for old, new in mig.optimizers.items():
            for part in ("optimizers", "schedulers", "scalers"):
                states = ck.get(part)
                if isinstance(states, dict) and old in states and new not in states:
                    states[new] = states.pop(old)
                    renamed.append(f"{part}.{old} -> {part}.{new}")
    return renamed


def print_notes(notes: list[str]) -> None:
    """The default way notes reach the user: one line each on stderr."""
    for note in notes:
        sys.stderr.write(f"note: {note}\n")


def read_saved_config(data: dict[str, Any], version: str | None = None,
                      on_note: Callable[[list[str]], None] = print_notes, added: bool = True) -> dict[str, Any]:
    """A saved config (from ``config.yaml`` or a checkpoint) in this medgen's layout, ready for
    strict validation; what changed is reported through ``on_note`` (``added``: see
    :func:`migrate_config`)."""
    migrated, notes = migrate_config(data, version, added=added)
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
