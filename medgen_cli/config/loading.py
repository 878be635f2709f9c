"""YAML loading, ``--set`` overrides and validation with messages a person can act on."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from medgen_cli.errors import MedgenError

M = TypeVar("M", bound=BaseModel)

#: Keys that may differ between a run's saved config and a resume. Anything else changing would
#: make the resumed run a different experiment, so it is refused.
RESUME_MUTABLE_KEYS: tuple[str, ...] = (
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.batch_size",
    "trainer.num_workers",
    "trainer.device",
    "trainer.channels_last",
    "trainer.log_every",
    "trainer.val_every",
    "trainer.early_stop_patience",
    "trainer.ckpt_every",
    "trainer.image_every",
    "trainer.keep_last",
    "trainer.val_batches",
    "fid.required",
    "data.cache_rate",  # caching changes no value, only speed and memory
    "data.cache_max_gb",
)

#: Config leaves that may change on resume wherever they are: learning rates (a run that diverged
#: continues from its last finite checkpoint with a lower one; the trainer applies the new rate).
RESUME_MUTABLE_LEAVES: tuple[str, ...] = ("lr", "lr_g", "lr_d")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``.

    Raises:
        MedgenError: the file is missing, is not YAML, or is not a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise MedgenError(f"config file not found: {p}", "check the path given to --config")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise MedgenError(f"{p} is not valid YAML{where}", "fix the syntax and try again") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MedgenError(f"{p} must hold a mapping of keys to values, not {type(data).__name__}")
    return data


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a value parsed by ``yaml.safe_load``."""
    if "=" not in text:
        raise MedgenError(f"--set expects KEY=VALUE, got {text!r}", "e.g. --set trainer.max_steps=200")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise MedgenError(f"--set has an empty key in {text!r}", "e.g. --set trainer.max_steps=200")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "1e-4" (no dot) as a string; users mean a number
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b=value`` override applied (nested dicts created)."""
    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return out


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields of the (nested) model reached by ``loc``; [] when not a model."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
        # Unwrap Optional[...] / unions to the model member, if any.
        for arg in getattr(current, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _format_error(model: type[BaseModel], err: dict[str, Any]) -> MedgenError:
    loc = tuple(err.get("loc", ()))
    key = ".".join(str(p) for p in loc) or "(top level)"
    if err.get("type") == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        hint = f"did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?" if close else (
            f"valid keys here: {', '.join(known)}" if known else None
        )
        return MedgenError(f"unknown config key '{key}'", hint)
    got = err.get("input")
    got_text = f" (got {got!r})" if not isinstance(got, dict) else ""
    return MedgenError(f"config key '{key}': {err.get('msg', 'invalid value')}{got_text}")


def validate_config(model: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` against ``model``; the first problem becomes a one-line MedgenError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = _format_error(model, errors[0])
        if len(errors) > 1:
            first.message += f" (and {len(errors) - 1} more problem(s))"
        raise first from exc


def dump_config(cfg: BaseModel) -> str:
    """The config as YAML, keys in definition order."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def check_resume_changes(saved: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """Keys whose value differs between a run's saved config and a resume request.

    Raises:
        MedgenError: a changed key is not in :data:`RESUME_MUTABLE_KEYS`.

    Returns:
        The whitelisted keys that changed (to be reported).
    """
    a, b = _flatten(saved), _flatten(requested)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    for key in changed:
        if key not in RESUME_MUTABLE_KEYS and key.rsplit(".", 1)[-1] not in RESUME_MUTABLE_LEAVES:
            raise MedgenError(
                f"cannot change '{key}' on resume ({a.get(key)!r} -> {b.get(key)!r})",
                "start a new run instead; on resume only "
                + ", ".join(RESUME_MUTABLE_KEYS)
                + ", learning rates (*.lr, *.lr_g, *.lr_d) and data.root (to a copy of the same files) may change",
            )
    return changed
