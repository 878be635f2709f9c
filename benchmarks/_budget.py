"""Helpers shared by the quality benchmarks: training for a wall-clock budget, running medgen's CLI,
trilinear baselines."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any


def train_for_minutes(cfg: Any, minutes: float) -> tuple[Path, int, float, float]:
    """Train ``cfg`` (its ``trainer.max_steps`` is an upper bound) until ``minutes`` have passed.

    The budget ends with the same SIGINT a user's Ctrl-C sends: the trainer finishes its step,
    writes ``latest.pt`` and stops, so the run is an ordinary, resumable medgen run.

    Returns:
        (run directory, steps trained, wall minutes, CPU minutes this process used: on a shared
        machine the second is what the run really got).
    """
    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.engine.trainer import TrainingInterrupted

    t0, c0 = time.perf_counter(), time.process_time()
    timer = threading.Timer(minutes * 60.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()
    try:
        run = train_from_config(cfg)
        assert run is not None
    except TrainingInterrupted as stop:
        assert stop.run_dir is not None
        run = stop.run_dir
    finally:
        timer.cancel()
    import torch

    step = int(torch.load(run / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")["step"])
    return run, step, (time.perf_counter() - t0) / 60.0, (time.process_time() - c0) / 60.0


def trilinear_baseline(vol: Any, values: int) -> Any:
    """``vol`` resized trilinearly to a cube of ~``values`` voxels and back (the trivial code of the
    same size as a latent holding ``values`` numbers)."""
    import torch
    import torch.nn.functional as F

    n = max(1, round(values ** (1.0 / vol.ndim)))
    x = torch.as_tensor(vol, dtype=torch.float32)[None, None]
    mode = "trilinear" if vol.ndim == 3 else "bilinear"
    small = F.interpolate(x, size=(n,) * vol.ndim, mode=mode, align_corners=False)
    return F.interpolate(small, size=tuple(vol.shape), mode=mode, align_corners=False)[0, 0].numpy()


def link_split(root: Path, split: str, files: list[Path]) -> None:
    """``root/split/`` holding symlinks to ``files`` (medgen reads ROOT/train and ROOT/val)."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f.resolve())


def nifti_files(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.name.endswith((".nii.gz", ".nii")))
    if not files:
        raise SystemExit(f"no NIfTI volumes in {folder}")
    return files


def run_for_minutes(cmd: list[str], log_path: Path, minutes: float, env: dict[str, str] | None = None,
                    cwd: Path | None = None) -> float:
    """Run ``cmd`` (a ``medgen train``) in a child process with its output in ``log_path``; after
    ``minutes`` send it SIGINT (the trainer saves ``latest.pt`` and exits). A SIGTERM of this script
    stops the child too, so a killed benchmark never leaves a trainer holding a core.

    Returns: wall minutes.
    """
    import subprocess
    import sys

    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # SystemExit: the `finally` runs
        try:
            while proc.poll() is None and time.time() < start + minutes * 60:
                time.sleep(2)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=1800)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return (time.time() - start) / 60


def medgen(*args: str) -> str:
    """Run ``python -m medgen_cli ARGS``; its stdout (exits with its output's tail on failure)."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "medgen_cli", *args], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"medgen {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return res.stdout


def eval_fid(real: Path, fake: Path | str) -> dict[str, Any]:
    """``medgen eval fid REAL FAKE --kid --prdc --json`` on the CPU, parsed (FID, KID, precision,
    recall, density, coverage)."""
    import json

    return json.loads(medgen("eval", "fid", str(real), str(fake), "--kid", "--prdc", "--device", "cpu", "--json"))
