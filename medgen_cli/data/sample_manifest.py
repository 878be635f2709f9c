"""The ``manifest.json`` of a sample folder (what ``medgen sample`` wrote there), read by the
writers (:mod:`medgen_cli.engine.outputs`) and by the evaluations, which count each sample once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from medgen_cli.errors import MedgenError

MANIFEST = "manifest.json"


def sample_manifest(folder: Path) -> list[dict[str, Any]] | None:
    """The entries of ``folder/manifest.json`` when it is a sample manifest (a list of ``{"file",
    "seed", ...}``; ``data convert-h5``'s manifest lists files too, but without seeds), else None."""
    path = folder / MANIFEST
    try:
        entries = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and {"file", "seed"} <= e.keys() for e in entries):
        return None
    return entries


def check_against_manifest(folder: Path, files: Sequence[Path], what: str) -> None:
    """A sample folder (one holding a sample ``manifest.json``) must hold exactly the files it lists,
    so an evaluation counts each sample once; other folders pass unchecked.

    Raises:
        MedgenError: files missing from the folder, or files the manifest does not list.
    """
    entries = sample_manifest(Path(folder))
    if entries is None:
        return
    listed, found = {str(e["file"]) for e in entries}, {Path(f).name for f in files}
    if listed != found:
        raise MedgenError(f"{folder} holds {len(found)} {what} but its {MANIFEST} lists {len(listed)} samples "
                          f"({len(found - listed)} not listed, {len(listed - found)} missing)",
                          "evaluate a folder written by one `medgen sample` call (one format per folder)")
