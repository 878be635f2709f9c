"""Run directories: ``<output_dir>/<family>/<name>/`` with a fixed, self-describing layout."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from medgen_cli.errors import MedgenError

CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    def step_ckpt(self, step: int) -> Path:
        return self.checkpoints / f"step_{step}.pt"

    @property
    def tb(self) -> Path:
        return self.root / "tb"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    def create(self) -> None:
        for d in (self.root, self.checkpoints, self.tb, self.samples):
            d.mkdir(parents=True, exist_ok=True)


def next_run_name(parent: Path) -> str:
    """``run-001``, ``run-002``, ...: one more than the highest existing number."""
    numbers = [int(m.group(1)) for p in parent.glob("run-*") if (m := re.fullmatch(r"run-(\d+)", p.name))]
    return f"run-{max(numbers, default=0) + 1:03d}"


def check_run_name(name: str) -> None:
    """Refuse a run name that is not one plain folder name (``a/../../b``, ``..``, empty).

    Raises:
        MedgenError: the name has other characters than letters, digits, '.', '_' and '-'.
    """
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name in (".", ".."):
        raise MedgenError(f"run name {name!r} may only contain letters, digits, '.', '_' and '-'")


def new_run_dir(output_dir: str | Path, family: str, name: str | None) -> RunDir:
    """Create a fresh run directory; a named run that already has checkpoints is refused.

    The name is checked before anything is created, so a refused name leaves no folder behind.
    """
    parent = Path(output_dir) / family
    if name is not None:
        check_run_name(name)
    run = RunDir(parent / (name if name is not None else next_run_name(parent)))
    if run.root.exists() and any(run.root.iterdir()):
        raise MedgenError(
            f"run directory {run.root} already exists",
            f"continue it with --resume {run.root}, or pick another --name",
        )
    run.create()
    return run


def existing_run_dir(path: str | Path) -> RunDir:
    """Open a run directory for resume/sampling.

    Raises:
        MedgenError: the folder has no config.yaml (not a medgen run).
    """
    run = RunDir(Path(path))
    if not run.config.is_file():
        raise MedgenError(f"{run.root} is not a medgen run directory (no {CONFIG_FILE})",
                          "pass a folder like runs/<family>/<name>")
    return run


_HELD: dict[str, int] = {}  # resolved run root -> open lock fd, so nested holds in one process are free


@contextlib.contextmanager
def run_lock(root: str | Path) -> Iterator[None]:
    """Hold an exclusive OS lock (``flock``) on ``root/.lock`` for the duration of the block.

    The lock belongs to the open file, so it vanishes with the process however it ends
    (``kill -9`` included): no stale lock to clean up. A second process on the same run gets
    one line naming the holder. Nested holds in the same process are no-ops.

    Raises:
        MedgenError: another process holds the run.
    """
    import fcntl

    key = str(Path(root).resolve())
    if key in _HELD:
        yield
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(root) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise MedgenError(f"run {root} is in use by another medgen process (pid {holder})",
                          "wait for it to finish or stop it; a killed process releases the run at once") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = fd
    try:
        yield
    finally:
        del _HELD[key]
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiting locker)
