"""Checkpoints: state dicts only, written atomically, read with ``weights_only=True``.

A checkpoint holds everything needed to continue a run bit-for-bit on the same machine:
module/optimizer/scheduler/scaler/EMA state dicts, RNG states (python, numpy, torch, cuda),
the step/epoch/position-in-epoch counters, the best metric, the family name and its extra state,
the resolved config and the medgen version.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen_cli import __version__
from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path, fsync_dir

FORMAT_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """RNG states as tensors/ints only, so they load under ``weights_only=True``."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, torch.tensor(py_state, dtype=torch.int64), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(int(x) for x in py_state.tolist()), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(payload: dict[str, Any], paths: list[Path]) -> None:
    """Write ``payload`` once to a temporary file, fsync, then atomically publish it under each
    of ``paths`` (hard links where possible, so ``latest.pt`` and ``step_N.pt`` cost one write).

    A crash at any point leaves every previously published file intact.
    """
    payload = {"format_version": FORMAT_VERSION, "medgen_version": __version__, **payload}
    first, rest = paths[0], paths[1:]
    with atomic_path(first, suffix=".pt") as tmp:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
    for extra in rest:
        _publish_copy(first, extra)


def _publish_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.link-{os.getpid()}")
    try:
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            import shutil

            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        MedgenError: missing, truncated or foreign file.
    """
    p = Path(path)
    if not p.is_file():
        raise MedgenError(f"checkpoint not found: {p}", "check the run directory or pass --checkpoint latest")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise MedgenError(
            f"cannot read checkpoint {p}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            "the file is truncated or not a medgen checkpoint; use another one from checkpoints/",
        ) from exc
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "family" not in ckpt:
        raise MedgenError(f"{p} is not a medgen checkpoint")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise MedgenError(f"{p} was written by a newer medgen ({ckpt.get('medgen_version')})", "upgrade medgen")
    return ckpt


def prune_step_checkpoints(ckpt_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` ``step_N.pt`` files."""
    steps = sorted(
        (int(p.stem.split("_", 1)[1]), p)
        for p in ckpt_dir.glob("step_*.pt")
        if p.stem.split("_", 1)[1].isdigit()
    )
    for _, p in steps[: max(len(steps) - keep_last, 0)]:
        p.unlink(missing_ok=True)
