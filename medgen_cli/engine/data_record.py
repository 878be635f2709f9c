"""A run's data folder: stored as an absolute path, and allowed to move between resumes.

A relative ``data.root`` means a different folder from every other working directory, so a
fresh run stores it resolved. ``data_files.json`` in the run folder lists the data's files
(relative names and sizes) when the run starts; a resume may then point ``data.root`` at another
folder when it holds the same files (data moved to another disk or machine), and only then.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from medgen_cli.contract.config import FamilyConfig
from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path

DATA_FILES = "data_files.json"


def data_root(cfg: FamilyConfig) -> str | None:
    """``cfg.data.root`` when the family has one and it is set."""
    root = getattr(getattr(cfg, "data", None), "root", None)
    return str(root) if root else None


def absolute(path: str) -> str:
    """``path`` made absolute against the working directory (``~`` expanded, symlinks kept)."""
    return os.path.abspath(os.path.expanduser(path))


def with_absolute_root(cfg: FamilyConfig) -> FamilyConfig:
    """``cfg`` with ``data.root`` resolved to an absolute path (unchanged when not set)."""
    root = data_root(cfg)
    if root is None or root == absolute(root):
        return cfg
    data = cfg.data.model_copy(update={"root": absolute(root)})  # type: ignore[attr-defined]
    return cfg.model_copy(update={"data": data})


def list_data_files(root: str | Path) -> dict[str, int]:
    """``{relative path: size in bytes}`` of the files under ``root`` (hidden entries skipped:
    caches and progress files that tools write next to the data)."""
    base = Path(root)
    out: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith("."):
                path = Path(dirpath) / name
                out[path.relative_to(base).as_posix()] = path.stat().st_size
    return out


def record_data_files(run_root: Path, cfg: FamilyConfig) -> None:
    """Write ``data_files.json`` for a fresh run (nothing when the family has no ``data.root``)."""
    root = data_root(cfg)
    if root is None or not Path(root).is_dir():
        return
    with atomic_path(run_root / DATA_FILES) as tmp:
        tmp.write_text(json.dumps({"root": root, "files": list_data_files(root)}) + "\n")


def _recorded(run_root: Path, saved_root: str) -> dict[str, int] | None:
    path = run_root / DATA_FILES
    if path.is_file():
        try:
            return {str(k): int(v) for k, v in json.loads(path.read_text())["files"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    # A run made before data_files.json existed: its old folder, if it is still there.
    return list_data_files(saved_root) if Path(saved_root).is_dir() else None


def check_moved_root(run_root: Path, saved_root: str, new_root: str) -> str:
    """Accept ``data.root`` changing on resume from ``saved_root`` to ``new_root`` when the new
    folder holds the same files (relative names and sizes) as the run's data.

    Returns:
        A note for the user.

    Raises:
        MedgenError: the new folder is missing or holds other files, or the run's files are unknown.
    """
    if not Path(new_root).is_dir():
        raise MedgenError(f"data.root {new_root} is not a folder")
    before = _recorded(run_root, saved_root)
    if before is None:
        raise MedgenError(f"cannot check data.root={new_root}: the run's data folder {saved_root} is gone and the "
                          f"run has no {DATA_FILES}", "put the data back at its old path to resume")
    now = list_data_files(new_root)
    if now != before:
        missing = sorted(set(before) - set(now))
        extra = sorted(set(now) - set(before))
        resized = sorted(k for k in set(before) & set(now) if before[k] != now[k])
        example = f"missing {missing[0]}" if missing else f"extra {extra[0]}" if extra else f"{resized[0]} has another size"
        raise MedgenError(
            f"data.root {new_root} does not hold the run's data ({len(missing)} missing, {len(extra)} extra, "
            f"{len(resized)} of another size; e.g. {example})",
            "data.root may change on resume only to a copy of the same files; start a new run for other data",
        )
    return f"data.root moved to {new_root}: it holds the same {len(now)} files (names and sizes) as the run's data"
