"""From a training request to a running trainer: config resolution, run directory, resume.

:func:`train` is the one library call behind ``medgen train <family>``; it reports through a
``notify`` callback and returns a :class:`TrainOutcome`, and the CLI prints, starts torchrun
processes and picks the exit code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from medgen_cli.contract.config import FamilyConfig
from medgen_cli.config.build import build_config
from medgen_cli.config.loading import check_resume_changes, dump_config
from medgen_cli.config.migrations import dump_run_config, load_run_config
from medgen_cli.engine.rundir import run_lock
from medgen_cli.errors import MedgenError
from medgen_cli.contract.registry import get_spec


@dataclass
class TrainRequest:
    """What ``medgen train <family>`` was asked to do."""

    family: str
    config_file: Path | None = None
    overrides: list[str] = field(default_factory=list)
    name: str | None = None
    output_dir: str | None = None
    resume: Path | None = None
    dry_run: bool = False
    nproc: int = 1
    require_fid: bool = False
    fork: str | None = None
    overwrite: bool = False


@dataclass
class TrainOutcome:
    """What :func:`train` did.

    Attributes:
        run_dir: the run directory (``None``: a dry run, a ``fast_dev_run`` or a non-zero rank).
        config_text: a dry run's resolved config (nothing was trained).
        processes: more than 1: nothing was trained; the caller must start this many processes
            under torchrun, each running the same request.
    """

    run_dir: Path | None = None
    config_text: str | None = None
    processes: int = 1


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def train_from_config(cfg: FamilyConfig, resume: str | Path | None = None, fork: str | None = None,
                      overwrite: bool = False) -> Path | None:
    """Train ``cfg`` in this process (or as one torchrun rank); return the run directory.

    With ``resume`` (a run directory, or one of its checkpoint files), ``cfg`` must be the run's
    saved config with only whitelisted changes; training continues from the newest readable
    checkpoint (see :func:`medgen_cli.engine.checkpoint.find_checkpoint`). A checkpoint older
    than the run's newest is refused unless ``fork`` (continue it as the new run ``fork`` next to
    this one) or ``overwrite`` (delete the history after it) says what to do with the newer one
    (see :mod:`medgen_cli.engine.history`). The run directory is locked while training
    (:func:`medgen_cli.engine.rundir.run_lock`).
    With ``trainer.fast_dev_run``, everything is written to a temporary directory that is removed.

    Raises:
        TrainingInterrupted: SIGINT/SIGTERM, also before the first step (then nothing was saved).
    """
    from medgen_cli.devices import resolve_device
    from medgen_cli.engine.data_record import with_absolute_root
    from medgen_cli.engine.distributed import env_world, init_distributed

    spec = get_spec(cfg.family)
    if resume is None:
        if fork is not None or overwrite:
            raise MedgenError("--fork and --overwrite apply to --resume", "add --resume RUN/checkpoints/step_N.pt")
        # Values derived from other runs or the data are fixed before the run folder exists, so
        # config.yaml and the checkpoints agree (a failure here leaves no folder behind).
        cfg = spec.family_class().resolve_config(with_absolute_root(cfg))
    rank, local_rank, _ = env_world()
    init_distributed(resolve_device(cfg.trainer.device, local_rank, setting="trainer.device"))
    family = spec.family_class()(cfg)
    opened: dict[str, Any] = {}  # the run and checkpoint, once known (for an early stop's message)
    try:
        with contextlib.ExitStack() as held, _signals_interrupt():
            family.check_data()  # a bad input file is named before any run folder exists
            if resume is not None:
                run, found, resumed = _open_resume(resume, cfg, held if rank == 0 else None, fork, overwrite)
                opened.update(run=run, found=found)
                if found is not None and _already_finished(found, resumed, run.root):
                    return run.root
                family = family if resumed is cfg else spec.family_class()(resumed)
                return _train_in(resumed, family, run, found, fresh=False)
            if cfg.trainer.fast_dev_run:
                return _train_in(cfg, family, None, None, fresh=True)
            run = _new_run(cfg, held)
            opened.update(run=run)
            return _train_in(cfg, family, run, None, fresh=True)
    except _EarlyStop as exc:
        # Stopped before the trainer took over the signals (reading data, building): nothing new
        # was saved; a fresh run keeps its config.yaml, from which --resume starts at step 0.
        from medgen_cli.engine.trainer import TrainingInterrupted

        found = opened.get("found")
        step = 0 if found is None else int(found.ckpt["step"])
        run = opened.get("run")
        raise TrainingInterrupted(step, None if run is None else run.root, exc.signum, saved=False) from None


def _new_run(cfg: FamilyConfig, held: contextlib.ExitStack) -> Any:
    """A fresh run folder (rank 0 creates and locks it, with its config.yaml and data listing)."""
    from medgen_cli.engine.data_record import record_data_files
    from medgen_cli.engine.distributed import broadcast_object, env_world
    from medgen_cli.engine.rundir import RunDir, new_run_dir
    from medgen_cli.io import atomic_path

    rank = env_world()[0]
    root = broadcast_object(str(new_run_dir(cfg.output_dir, cfg.family, cfg.name).root) if rank == 0 else None)
    run = RunDir(Path(root))
    if rank == 0:
        try:
            held.enter_context(run_lock(run.root))
            # config.yaml at once: a run stopped before its first step can still be resumed.
            with atomic_path(run.config) as tmp:
                tmp.write_text(dump_run_config(cfg))
            record_data_files(run.root, cfg)
        except BaseException:
            if not run.config.is_file():  # nothing a resume could use: leave no folder
                shutil.rmtree(run.root, ignore_errors=True)
            raise
    return run


def _train_in(cfg: FamilyConfig, family: Any, run: Any, found: Any, fresh: bool) -> Path | None:
    """Run the trainer in ``run`` (``None``: a fast_dev_run in a temporary folder) and clean up
    what a failed fresh run leaves."""
    from medgen_cli.engine.distributed import broadcast_object, env_world, shutdown_distributed
    from medgen_cli.engine.rundir import RunDir

    rank, _, world = env_world()
    tmp_root: str | None = None
    if run is None:
        tmp_root = broadcast_object(tempfile.mkdtemp(prefix="medgen-fastdev-") if rank == 0 else None)
        run = RunDir(Path(tmp_root) / cfg.family / "fast_dev_run")
        if rank == 0:
            run.create()
    try:
        _fit(cfg, family, run if rank == 0 else None, found)
    except MedgenError:
        # A fresh run that failed before its first checkpoint (bad data path, wrong
        # autoencoder_run, a full disk, ...) leaves no directory behind, so the same --name works next time.
        if fresh and tmp_root is None and rank == 0 and not any(run.checkpoints.glob("*.pt")):
            shutil.rmtree(run.root, ignore_errors=True)
        raise
    finally:
        if tmp_root is not None and rank == 0:
            shutil.rmtree(tmp_root, ignore_errors=True)
        if world > 1:
            shutdown_distributed()
    return None if tmp_root is not None else run.root


class _EarlyStop(BaseException):
    """SIGINT/SIGTERM before the trainer's own handlers are installed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into :class:`_EarlyStop` until the trainer installs its own handlers
    (which it restores after the loop), so an early stop is reported instead of ending the
    process silently."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _EarlyStop(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _fit(cfg: FamilyConfig, family: Any, run: Any, found: Any) -> None:
    """Write the config and run the trainer (``run`` is None on other ranks); a full disk
    becomes one line naming the file and what to free."""
    from medgen_cli.engine.trainer import Trainer
    from medgen_cli.io import atomic_path, disk_full_error, is_disk_full

    try:
        if run is not None:
            with atomic_path(run.config) as tmp:
                tmp.write_text(dump_run_config(cfg))
        Trainer(cfg, family, run, resume=None if found is None else found.ckpt).fit()
    except OSError as exc:
        if not is_disk_full(exc) or run is None:
            raise
        kept = sorted(run.checkpoints.glob("*.pt"), key=lambda p: p.stat().st_mtime)
        need = f" (a checkpoint takes {kept[-1].stat().st_size / 1e6:.1f} MB)" if kept else ""
        then = (f"the last good checkpoint is kept{need}: then resume with medgen train {cfg.family} --resume {run.root}"
                if kept else "then start the run again")
        raise disk_full_error(exc, run.root, then) from exc


def _open_resume(target: str | Path, cfg: FamilyConfig, held: contextlib.ExitStack | None, fork: str | None,
                 overwrite: bool) -> tuple[Any, Any, FamilyConfig]:
    """The run directory to train in, the checkpoint to continue from (``None``: the run has
    none yet) and the config, taking the run's lock first (``held``: rank 0 only).

    ``target`` is a run folder or one of its ``.pt`` files. An older checkpoint than the run's
    newest needs ``fork`` or ``overwrite`` (see :mod:`medgen_cli.engine.history`); with ``fork`` the
    source run is locked only while it is copied, and the new run is returned.
    """
    from medgen_cli.engine import checkpoint as ckpt_io
    from medgen_cli.engine import history
    from medgen_cli.engine.rundir import RunDir, existing_run_dir

    root, which = ckpt_io.split_checkpoint_path(target)
    run = existing_run_dir(root)
    notes: list[str] = []
    with contextlib.ExitStack() as source:
        if held is not None:
            (held if fork is None else source).enter_context(run_lock(run.root))
        found = ckpt_io.find_checkpoint(run.root, which)
        if found is not None and get_spec(found.ckpt["family"]).name != cfg.family:
            raise MedgenError(f"{run.root} is a '{found.ckpt['family']}' run, not '{cfg.family}'")
        older = found is not None and history.check_resume_point(run, int(found.ckpt["step"]), which != "resume", fork,
                                                                 overwrite, found.path)
        source_root = run.root
        if fork is not None:
            if found is None:
                raise MedgenError(f"{run.root} has no checkpoint to fork", "resume it without --fork")
            cfg = cfg.model_copy(update={"name": fork})
            if held is None:
                run = RunDir(run.root.parent / fork)
            else:
                run, note = history.fork_run(run, found, fork, lambda _: dump_run_config(cfg))
                notes.append(note)
        elif older and held is not None:
            notes.append(history.truncate_history(run, found))
    if held is not None:
        if fork is not None:
            held.enter_context(run_lock(run.root))
        console = _console()
        for note in [] if found is None else found.skipped:
            console.print(f"[yellow]skipped unreadable checkpoint {note}[/]", highlight=False)
        for note in notes:
            console.print(f"[yellow]{note}[/]", highlight=False)
        where = run.root if fork is None else f"{run.root} (a fork of {source_root})"
        console.print(f"resuming {where} from " + ("step 0: it has no checkpoint yet" if found is None
                                                    else found.describe()), highlight=False)
    return run, found, cfg


def resume_config(run_dir: Path, family: str, config_file: Path | None, overrides: list[str],
                  notify: Callable[[str], None] | None = None) -> tuple[FamilyConfig, list[str]]:
    """The saved config of ``run_dir`` with whitelisted overrides applied (others are refused).

    ``data.root`` may change too when the new folder holds the same files as the run's data
    (see :func:`medgen_cli.engine.data_record.check_moved_root`); ``notify`` then gets a note.
    """
    from medgen_cli.engine.data_record import absolute, check_moved_root, data_root
    from medgen_cli.engine.rundir import existing_run_dir

    run = existing_run_dir(run_dir)
    saved = load_run_config(run.config)
    saved_family = saved.get("family")
    if saved_family is not None and get_spec(str(saved_family)).name != get_spec(family).name:
        raise MedgenError(f"{run.root} is a '{saved_family}' run, not '{family}'",
                          f"resume it with medgen train {saved_family} --resume {run.root}")
    saved_cfg = build_config(family, base=saved)
    cfg = build_config(family, config_file, overrides, base=saved)
    old_root, new_root = data_root(saved_cfg), data_root(cfg)
    moved = new_root is not None and old_root is not None and absolute(new_root) != old_root
    if moved:
        note = check_moved_root(run.root, old_root, absolute(new_root))
        if notify is not None:
            notify(note)
        saved_cfg = saved_cfg.model_copy(update={"data": saved_cfg.data.model_copy(update={"root": absolute(new_root)})})  # type: ignore[attr-defined]
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": absolute(new_root)})})  # type: ignore[attr-defined]
    changed = check_resume_changes(saved_cfg.model_dump(mode="json"), cfg.model_dump(mode="json"))
    return cfg, (["data.root"] if moved else []) + changed


def train(req: TrainRequest, notify: Callable[[str], None] = _stderr) -> TrainOutcome:
    """Resolve the config of ``req`` (a fresh run or a resume) and train it in this process.

    Args:
        req: what ``medgen train <family>`` was asked to do.
        notify: receives one-line messages for the user (e.g. which keys a resume changes).

    Returns:
        What was done (see :class:`TrainOutcome`).

    Raises:
        MedgenError: anything the user can fix (config, data, devices, run folders).
        TrainingInterrupted: SIGINT/SIGTERM stopped training after saving ``latest.pt``.
    """
    overrides = list(req.overrides)
    if req.name is not None:
        overrides.append(f"name={req.name}")
    if req.output_dir is not None:
        overrides.append(f"output_dir={req.output_dir}")
    if req.require_fid:
        if "fid" not in get_spec(req.family).config_class().model_fields:
            raise MedgenError(f"--require-fid applies to families that track FID while training, not '{req.family}'",
                              "drop --require-fid")
        overrides.append("fid.required=true")
    if req.resume is not None:
        from medgen_cli.engine.checkpoint import split_checkpoint_path
        from medgen_cli.engine.history import precheck

        precheck(req.resume, req.fork, req.overwrite)  # an older checkpoint without a choice: one line, nothing else
        cfg, changed = resume_config(split_checkpoint_path(req.resume)[0], req.family, req.config_file, overrides,
                                     notify)
        if changed:
            notify("resume: changed " + ", ".join(changed))
    else:
        cfg = build_config(req.family, req.config_file, overrides)
    if req.dry_run:
        return TrainOutcome(config_text=dump_config(cfg))
    if req.nproc > 1 and "LOCAL_RANK" not in os.environ:
        return TrainOutcome(processes=req.nproc)
    run_dir = train_from_config(cfg, resume=req.resume, fork=req.fork, overwrite=req.overwrite)
    return TrainOutcome(run_dir=run_dir if int(os.environ.get("RANK", 0)) == 0 else None)


def _already_finished(found: Any, cfg: FamilyConfig, run_root: Path) -> bool:
    step, epoch = found.ckpt["step"], found.ckpt["epoch"]
    t = cfg.trainer
    if step >= t.max_steps or (t.max_epochs is not None and epoch >= t.max_epochs):
        if int(os.environ.get("RANK", 0)) == 0:
            _console().print(f"{run_root} already finished at step {step} (max_steps={t.max_steps}); nothing to do. "
                             f"To train longer: --resume {run_root} --set trainer.max_steps=N", highlight=False)
        return True
    waited, patience = int((found.ckpt.get("best") or {}).get("since_best", 0)), t.early_stop_patience
    if patience > 0 and waited >= patience:
        if int(os.environ.get("RANK", 0)) == 0:
            _console().print(f"{run_root} stopped early at step {step}: {waited} evaluations without a new best.pt "
                             f"(trainer.early_stop_patience={patience}); nothing to do. To train on: --resume "
                             f"{run_root} --set trainer.early_stop_patience=N (more, or 0 = off)", highlight=False)
        return True
    return False

