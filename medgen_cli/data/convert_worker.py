"""The convert-h5 worker: read a chunk of clouds, clean them, voxelize them in one pass, write them.

Runs in worker processes (see :mod:`medgen_cli.data.convert`); everything it needs travels in
the job dict, and it returns plain records and counts.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from medgen_cli.data import h5io
from medgen_cli.data.voxelize import DegenerateBounds, Grid, fit_grid, voxelize_batch
from medgen_cli.errors import MedgenError

if TYPE_CHECKING:
    from medgen_cli.data.convert_options import ConvertOptions


def _clean(c: h5io.Cloud, opts: ConvertOptions, source: str) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Drop points with NaN/Inf coordinates (or values); returns (points, weights, dropped)."""
    w = c.values if opts.weights else None
    ok = np.isfinite(c.points).all(axis=1)
    if w is not None:
        ok &= np.isfinite(w)
    dropped = int(len(ok) - ok.sum())
    if dropped and opts.strict:
        raise MedgenError(f"{source} cloud {c.index}: {dropped} point(s) with NaN/Inf", "drop --strict to skip them and count them")
    pts = c.points[ok]
    if w is not None:
        w = w[ok]
        if np.any(w < 0):
            raise MedgenError(f"{source} cloud {c.index}: negative per-point values cannot be weights", "drop --weights")
    return pts, w, dropped


def _record(rel: str, split: str, source: str, c: h5io.Cloud, pts: np.ndarray, dropped: int, outside: int,
            grid: Grid, mode: str, opts: ConvertOptions) -> dict[str, Any]:
    return {
        "file": rel, "split": split, "source": source, "index": c.index, "label": c.label,
        "n_points": int(len(pts) - outside), "n_nonfinite": dropped, "n_outside": outside,
        "bounds": [pts.min(0).tolist(), pts.max(0).tolist()],
        "normalization": {"mode": mode, "margin": opts.margin if mode in ("sample", "dataset") else 0.0,
                          "origin": grid.origin.tolist(), "voxel_size": grid.voxel_size.tolist()},
        "affine": grid.affine().tolist(),
    }


def init_worker(parent_pid: int) -> None:
    """Pool initializer: die with the parent, and leave Ctrl-C to it.

    On Linux the kernel sends SIGKILL to this worker when its parent dies (``PR_SET_PDEATHSIG``),
    so a ``kill -9`` of convert-h5 leaves no orphaned workers behind. SIGINT reaches the whole
    process group on Ctrl-C; only the parent reacts (it stops handing out work and says how to
    resume), the workers finish their chunk instead of printing tracebacks.
    """
    import os
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the worker still ends when the pool closes
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def convert_chunk(job: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int], list[dict[str, Any]]]:
    """Worker: read clouds ``start..stop`` of one source, voxelize the ones to do, write them."""
    from medgen_cli.data.fastnifti import write_nifti_gz

    opts: ConvertOptions = job["opts"]
    src, todo, mode = job["source"], job["todo"], opts.mode()
    counts = {"train": 0, "val": 0, "empty": 0, "degenerate": 0, "outside_all": 0,
              "nonfinite_points": 0, "outside_points": 0, "points": 0}
    skipped: list[dict[str, Any]] = []
    ready: list[tuple[h5io.Cloud, np.ndarray, np.ndarray | None, int, Grid, tuple[str, str]]] = []
    with h5io.open_h5(src) as f:
        clouds = h5io.read_clouds(f, job["layout"], job["start"], job["stop"])
    for c in clouds:
        if c.index not in todo:
            continue
        pts, w, dropped = _clean(c, opts, src)
        counts["nonfinite_points"] += dropped
        if len(pts) == 0:
            counts["empty"] += 1
            skipped.append({"source": src, "index": c.index, "reason": "empty" if not dropped else "only NaN/Inf points"})
            continue
        grid = job["grid"]
        if grid is None:
            try:
                grid = fit_grid(pts.min(0), pts.max(0), opts.resolution, opts.margin, opts.spacing)
            except DegenerateBounds:
                counts["degenerate"] += 1
                skipped.append({"source": src, "index": c.index, "reason": "all points identical (degenerate bounds)"})
                continue
        ready.append((c, pts, w, dropped, grid, todo[c.index]))
    records: list[dict[str, Any]] = []
    if ready:
        vols, outside = voxelize_batch([r[1] for r in ready], [r[4] for r in ready], opts.method,
                                       [r[2] for r in ready] if opts.weights else None, opts.sigma)
        out = Path(job["out"])
        for (c, pts, _w, dropped, grid, (split, rel)), vol, n_out in zip(ready, vols, outside.tolist()):
            counts["outside_points"] += n_out
            if n_out == len(pts):
                counts["outside_all"] += 1
                skipped.append({"source": src, "index": c.index, "reason": "no point inside the grid"})
                continue
            write_nifti_gz(vol, out / rel, grid.affine(), overwrite=True)
            counts[split] += 1
            counts["points"] += len(pts) - n_out
            records.append(_record(rel, split, src, c, pts, dropped, n_out, grid, mode, opts))
    return records, counts, skipped


@contextmanager
def workers_born_ignoring_sigint() -> Iterator[None]:
    """Ignore SIGINT while worker processes are started: a spawned interpreter keeps an ignored
    SIGINT ignored, so a Ctrl-C that lands while a worker is still importing (before
    ``init_worker`` runs) cannot print that worker's KeyboardInterrupt traceback. The parent's
    handler is back as soon as the workers exist; Ctrl-C then stops the parent, which stops them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
