"""Checkpoints: state dicts only, written atomically, read with ``weights_only=True``.

A checkpoint holds everything needed to continue a run bit-for-bit on the same machine:
module/optimizer/scheduler/scaler/EMA state dicts, RNG states (python, numpy, torch, cuda),
the step/epoch/position-in-epoch counters, the best metric, the family name and its extra state,
the resolved config and the medgen version.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
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


def _unreadable_reason(exc: BaseException) -> str:
    """Our own short words for why ``torch.load`` failed (its text runs to several sentences and,
    for a foreign pickle, suggests ``weights_only=False``, which we never want to recommend)."""
    text = str(exc)
    if "Unsupported global" in text or "Unsupported class" in text:
        return "it holds Python objects a weights-only load refuses (not a medgen checkpoint)"
    return f"the file is truncated or corrupt ({type(exc).__name__})"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``: the one checkpoint reader.

    Raises:
        MedgenError: missing, truncated or foreign file (one line naming it).
    """
    import warnings

    p = Path(path)
    if not p.is_file():
        raise MedgenError(f"checkpoint not found: {p}", "check the run directory or pass --checkpoint latest")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol ..." on foreign pickles
            ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise MedgenError(f"cannot read checkpoint {p}: {_unreadable_reason(exc)}",
                          "use another file from checkpoints/") from exc
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "family" not in ckpt:
        raise MedgenError(f"{p} is not a medgen checkpoint")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise MedgenError(f"{p} was written by a newer medgen ({ckpt.get('medgen_version')})", "upgrade medgen")
    return ckpt


def peek_step(path: str | Path) -> int | None:
    """The ``step`` of a checkpoint without reading its tensors (memory-mapped, weights-only), or
    ``None`` when the file cannot be read: cheap enough to compare checkpoints before choosing one."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["step"])
    except Exception:  # unreadable or foreign: the caller falls back as find_checkpoint would
        return None


def step_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """``(N, step_N.pt)`` pairs, oldest first."""
    return sorted(
        (int(p.stem.split("_", 1)[1]), p)
        for p in Path(ckpt_dir).glob("step_*.pt")
        if p.stem.split("_", 1)[1].isdigit()
    )


@dataclass
class FoundCheckpoint:
    """A checkpoint picked by :func:`find_checkpoint`, already read.

    Attributes:
        path: the file that was read.
        ckpt: its contents.
        skipped: one line per newer candidate that could not be read (``"<file>: <why>"``).
    """

    path: Path
    ckpt: dict[str, Any]
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``checkpoints/step_40.pt (step 40)``, for "resumed from ..." / "sampling from ..." lines."""
        return f"{self.path.parent.name}/{self.path.name} (step {self.ckpt.get('step', '?')})"


def candidates(ckpt_dir: Path, which: str) -> list[Path]:
    """Files to try, newest first, for ``which``:

    - ``resume``: ``latest.pt``, then ``step_N.pt`` newest first, then ``best.pt`` (a best
      checkpoint is older than the newest step one, so it is the last resort).
    - ``latest``: ``latest.pt``, then ``step_N.pt`` newest first.
    - ``best``: ``best.pt``, then as ``latest`` (a run that never validated a key metric).
    """
    ckpt_dir = Path(ckpt_dir)
    steps = [p for _, p in reversed(step_checkpoints(ckpt_dir))]
    latest = [ckpt_dir / "latest.pt", *steps]
    order = {"resume": [*latest, ckpt_dir / "best.pt"], "latest": latest, "best": [ckpt_dir / "best.pt", *latest]}
    if which not in order:
        raise ValueError(which)
    return [p for p in order[which] if p.is_file()]


def find_checkpoint(run_dir: str | Path, which: str = "resume", map_location: str | torch.device = "cpu") -> FoundCheckpoint | None:
    """Find and read the checkpoint of a run: the one way training (resume) and inference
    (``medgen sample``, the Python API) pick a checkpoint.

    Args:
        run_dir: the run directory.
        which: ``resume`` | ``latest`` | ``best`` (see :func:`candidates`), or a path to a
            ``.pt`` file (absolute, relative to the working directory, or a name inside
            ``RUN/checkpoints``), which is read without fallback.
        map_location: passed to ``torch.load``.

    Returns:
        The newest readable candidate, or ``None`` when the run has no checkpoint file at all.

    Raises:
        MedgenError: an explicit file that is missing or unreadable, or checkpoint files of
            which none can be read (each is named).
    """
    ckpt_dir = Path(run_dir) / "checkpoints"
    if which not in ("resume", "latest", "best"):
        path = Path(which)
        if not path.is_file() and (ckpt_dir / which).is_file():
            path = ckpt_dir / which
        if not path.is_file():
            raise MedgenError(f"checkpoint {which!r} not found", "use best, latest, or a path to a .pt file")
        return FoundCheckpoint(path, load_checkpoint(path, map_location))
    skipped: list[str] = []
    for path in candidates(ckpt_dir, which):
        try:
            return FoundCheckpoint(path, load_checkpoint(path, map_location), skipped)
        except MedgenError as exc:
            skipped.append(f"{path.name}: {exc.message.split(': ', 1)[-1]}")
    if skipped:
        raise MedgenError(f"no readable checkpoint in {ckpt_dir} ({'; '.join(skipped)})",
                          "the run cannot continue from its own files; start a new run")
    return None


def split_checkpoint_path(target: str | Path) -> tuple[Path, str]:
    """``RUN`` → ``(RUN, "resume")``; ``RUN/checkpoints/step_40.pt`` → ``(RUN, that path)``."""
    p = Path(target)
    if p.is_file() and p.suffix == ".pt":
        return (p.parent.parent if p.parent.name == "checkpoints" else p.parent), str(p)
    return p, "resume"


def load_module_states(modules: dict[str, torch.nn.Module], states: dict[str, Any], path: Path | str) -> None:
    """``load_state_dict`` for every module, with one line naming the checkpoint when it does not fit."""
    try:
        for name, module in modules.items():
            module.load_state_dict(states[name])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise MedgenError(f"{path} does not fit the run's model: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                          "use the run's own config; model settings cannot change on resume") from exc


def prune_step_checkpoints(ckpt_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` ``step_N.pt`` files."""
    steps = step_checkpoints(ckpt_dir)
    for _, p in steps[: max(len(steps) - keep_last, 0)]:
        p.unlink(missing_ok=True)
