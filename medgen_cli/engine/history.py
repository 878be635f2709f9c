"""Resuming from a checkpoint older than a run's newest one: refuse, fork or truncate.

A run's ``latest.pt`` and ``best.pt`` describe its whole history ("the newest state", "the best
of this run's history"). Continuing from an older ``step_N.pt`` in place would replace both with
a different branch of training, so it needs an explicit choice:

- ``--fork NAME`` copies the config and that checkpoint into a sibling run folder and continues
  there (the source run is left as it was; ``origin.json`` records where the fork came from);
- ``--overwrite`` truncates the run's history at that step: newer ``step_N.pt`` files go,
  ``latest.pt`` becomes that checkpoint and ``best.pt`` the best of the steps up to it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from medgen_cli.engine import checkpoint as ckpt_io
from medgen_cli.engine.rundir import RunDir, check_run_name
from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path


def newest_step(run: RunDir) -> int | None:
    """The step of the run's newest readable checkpoint (``latest.pt``, else ``step_N.pt``)."""
    for path in ckpt_io.candidates(run.checkpoints, "latest"):
        step = ckpt_io.peek_step(path)
        if step is not None:
            return step
    return None


def check_resume_point(run: RunDir, step: int, explicit: bool, fork: str | None, overwrite: bool,
                       path: Path | str = "") -> bool:
    """Whether checkpoint ``step`` is older than the run's newest one (then a choice is required).

    Args:
        run: the run being resumed.
        step: the step of the checkpoint to continue from.
        explicit: the user named a checkpoint file (``--resume RUN`` picks the newest itself).
        fork: ``--fork NAME``, if given.
        overwrite: ``--overwrite``, if given.
        path: the checkpoint file, for the message.

    Raises:
        MedgenError: an older checkpoint without ``--fork``/``--overwrite``, or both given.
    """
    if fork is not None and overwrite:
        raise MedgenError("--fork and --overwrite exclude each other",
                          "--fork NAME keeps this run and continues in a new one; --overwrite truncates this run")
    if not explicit:
        return False
    newest = newest_step(run)
    if newest is None or step >= newest:
        return False
    if fork is None and not overwrite:
        raise MedgenError(
            f"{path} is step {step}, older than the run's newest checkpoint (step {newest}): continuing it "
            "here would replace latest.pt and best.pt",
            f"add --fork NAME to continue it as a new run, or --overwrite to delete this run's history after step {step}",
        )
    return True


def precheck(target: str | Path, fork: str | None, overwrite: bool) -> None:
    """:func:`check_resume_point` for ``--resume target`` from the checkpoints' steps alone, so
    a refused resume says one line before anything else is printed or read."""
    root, which = ckpt_io.split_checkpoint_path(target)
    if which == "resume":
        check_resume_point(RunDir(Path(root)), 0, False, fork, overwrite)
        return
    step = ckpt_io.peek_step(which)
    if step is not None:
        check_resume_point(RunDir(Path(root)), step, True, fork, overwrite, which)


def _best_file(run: RunDir, record: dict[str, Any], upto: int) -> Path | None:
    """A file holding the best checkpoint of the steps up to ``upto`` (``record``: the ``best``
    entry of the checkpoint at ``upto``), or ``None`` when no such file is left."""
    best_step = record.get("step")
    if record.get("value") is None or best_step is None or best_step > upto:
        return None
    by_step = run.step_ckpt(int(best_step))
    if by_step.is_file():
        return by_step
    if run.best.is_file() and ckpt_io.peek_step(run.best) == int(best_step):
        return run.best
    return None


def _link_or_copy(src: Path, dst: Path) -> None:
    """Publish ``src`` as ``dst`` atomically (a hard link where possible, as the trainer does)."""
    with atomic_path(dst, suffix=".pt") as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _settle_best(run: RunDir, target: RunDir, found: ckpt_io.FoundCheckpoint) -> str:
    """Make ``target``'s ``best.pt`` the best of ``run``'s history up to ``found``; a note for the user.

    When that checkpoint is no longer on disk (a later best replaced ``best.pt`` and its
    ``step_N.pt`` was pruned), ``best.pt`` is removed and the best record is cleared, so best.pt
    restarts from the next validation instead of pointing at a model from another branch.
    """
    upto = int(found.ckpt["step"])
    record = dict(found.ckpt.get("best") or {})
    src = _best_file(run, record, upto)
    if src is not None:
        if src.resolve() != target.best.resolve():
            _link_or_copy(src, target.best)
        return f"best.pt is step {record['step']} ({record.get('metric')}={record['value']:.5g})"
    target.best.unlink(missing_ok=True)
    if record.get("value") is not None:
        found.ckpt["best"] = {**record, "value": None, "step": None}
        return (f"the best checkpoint up to step {upto} (step {record.get('step')}) is no longer on disk: "
                "best.pt restarts from the next validation")
    return "no best.pt yet"


def truncate_history(run: RunDir, found: ckpt_io.FoundCheckpoint) -> str:
    """``--overwrite``: delete the run's checkpoints newer than ``found`` and make ``latest.pt``
    that checkpoint and ``best.pt`` the best up to it. Returns one line saying what was done."""
    step = int(found.ckpt["step"])
    removed = [p for n, p in ckpt_io.step_checkpoints(run.checkpoints) if n > step]
    # best.pt first: it may have to be taken from a step file that is about to go.
    best_note = _settle_best(run, run, found)
    if found.path.resolve() != run.latest.resolve():
        _link_or_copy(found.path, run.latest)
    for p in removed:
        p.unlink(missing_ok=True)
    gone = ", ".join(p.name for p in removed) or "no step files"
    return f"--overwrite: history after step {step} deleted ({gone}); latest.pt is step {step}; {best_note}"


def fork_run(run: RunDir, found: ckpt_io.FoundCheckpoint, name: str, config_text: Callable[[str], str]) -> tuple[RunDir, str]:
    """``--fork NAME``: a new run folder next to ``run`` holding its config (renamed) and the
    checkpoint ``found`` as ``latest.pt``; ``origin.json`` records the source.

    Args:
        run: the source run (left unchanged).
        found: the checkpoint to continue from.
        name: the new run's name.
        config_text: the new run's ``config.yaml`` text, given its name.

    Returns:
        The new run and one line saying what was done.

    Raises:
        MedgenError: a bad name or a folder that already exists.
    """
    check_run_name(name)
    fork = RunDir(run.root.parent / name)
    if fork.root.exists() and any(fork.root.iterdir()):
        raise MedgenError(f"run directory {fork.root} already exists", "pick another --fork NAME")
    step = int(found.ckpt["step"])
    fork.create()
    try:
        with atomic_path(fork.config) as tmp:
            tmp.write_text(config_text(name))
        _link_or_copy(found.path, fork.step_ckpt(step))
        _link_or_copy(fork.step_ckpt(step), fork.latest)
        best_note = _settle_best(run, fork, found)
        if run.metrics.is_file():  # the fork's curves start with the source's (later steps are dropped on start)
            shutil.copyfile(run.metrics, fork.metrics)
        origin = {"forked_from": str(run.root.resolve()), "checkpoint": str(found.path.resolve()), "step": step}
        with atomic_path(fork.root / "origin.json") as tmp:
            tmp.write_text(json.dumps(origin, indent=2) + "\n")
    except BaseException:  # a full disk or Ctrl-C while copying: no half-made fork takes the name
        shutil.rmtree(fork.root, ignore_errors=True)
        raise
    return fork, f"forked {run.root} at step {step} into {fork.root}; {best_note}"
