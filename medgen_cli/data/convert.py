"""``medgen data convert-h5``: H5 point clouds → ``DIR/{train,val}/*.nii.gz`` + ``DIR/manifest.json``.

Pipeline: detect each input's layout (:mod:`medgen_cli.data.h5io`), assign every cloud to train or
val with a seeded permutation (deterministic, independent of ``--workers``), optionally fit one
dataset-wide grid, then convert chunks of consecutive clouds in worker processes: clean
(NaN/Inf points dropped and counted, or an error with ``strict``), fit the grid, voxelize the
chunk in one vectorised pass (:mod:`medgen_cli.data.voxelize`) and write each volume under a
temporary name + rename (:mod:`medgen_cli.data.fastnifti`).

Output folder rules: an existing non-empty ``DIR`` is an error unless ``resume`` (skip samples
whose file and record exist; the options must match those recorded in ``DIR/convert.json``) or
``overwrite`` (remove the previous outputs first). Records of finished samples are appended to
``DIR/.progress.jsonl`` as they complete, so an interrupted run resumes where it stopped; at the
end they are gathered into ``manifest.json`` (a list of records: ``file`` relative to ``DIR``,
``split``, ``source``, ``index``, ``label``, ``n_points``, ``n_nonfinite``, ``n_outside``,
``bounds`` ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``, ``normalization``, ``affine``).
A fresh run that fails on bad input removes everything it wrote.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medgen_cli.data import h5io
from medgen_cli.data.voxelize import (METHODS, NORMALIZATIONS, DegenerateBounds, Grid, fit_grid, identity_grid,
                                      voxelize_batch)
from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path

PROGRESS = ".progress.jsonl"
OPTIONS_FILE = "convert.json"
_RESUME_FREE = ("workers", "resume", "overwrite", "chunk")  # options that may change on --resume


@dataclass
class ConvertOptions:
    """Everything ``convert-h5`` needs (the CLI flags, validated by :meth:`check`)."""

    inputs: list[str]
    out: str
    key: str | None = None
    label_key: str | None = None
    resolution: tuple[int, int, int] = (64, 64, 64)
    method: str = "occupancy"
    sigma: float = 1.0
    weights: bool = False
    normalize: str = "sample"
    margin: float = 0.05
    bounds: list[list[float]] | None = None
    spacing: tuple[float, float, float] | None = None
    val_fraction: float = 0.1
    seed: int = 0
    strict: bool = False
    workers: int = 1
    resume: bool = False
    overwrite: bool = False
    chunk: int = 16

    def check(self) -> None:
        """Raise :class:`MedgenError` on an invalid combination of options."""
        if self.method not in METHODS:
            raise MedgenError(f"unknown --method {self.method!r}", f"use one of {', '.join(METHODS)}")
        if self.normalize not in NORMALIZATIONS:
            raise MedgenError(f"unknown --normalize {self.normalize!r}", f"use one of {', '.join(NORMALIZATIONS)}")
        if not self.sigma > 0:
            raise MedgenError(f"--sigma must be positive, not {self.sigma}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise MedgenError(f"--val-fraction must be in [0, 1), not {self.val_fraction}")
        if not 0.0 <= self.margin < 0.5:
            raise MedgenError(f"--margin must be in [0, 0.5), not {self.margin}")
        if self.resume and self.overwrite:
            raise MedgenError("--resume and --overwrite exclude each other")
        if self.workers < 0 or self.chunk < 1:
            raise MedgenError("--workers must be >= 0")
        if not self.inputs:
            raise MedgenError("no input files")

    def mode(self) -> str:
        """The effective normalization: ``bounds`` when explicit bounds are given."""
        return "bounds" if self.bounds is not None else self.normalize

    def signature(self) -> dict[str, Any]:
        """The options that define the output (compared on ``--resume``)."""
        d = asdict(self)
        for k in _RESUME_FREE:
            d.pop(k)
        d["inputs"] = [str(Path(p).resolve()) for p in self.inputs]
        d["out"] = str(Path(self.out).resolve())
        return json.loads(json.dumps(d))


@dataclass
class SourceStats:
    """Counts for one input file (one row of the summary table)."""

    source: str
    layout: str
    clouds: int
    train: int = 0
    val: int = 0
    resumed: int = 0
    empty: int = 0
    degenerate: int = 0
    outside_all: int = 0
    nonfinite_points: int = 0
    outside_points: int = 0
    points: int = 0

    def add(self, other: dict[str, int]) -> None:
        """Add a worker's counts."""
        for k, v in other.items():
            setattr(self, k, getattr(self, k) + v)


@dataclass
class ConvertSummary:
    """What a conversion did."""

    out: Path
    sources: list[SourceStats]
    seconds: float
    records: int
    skipped_samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def written(self) -> int:
        """Volumes written by this run."""
        return sum(s.train + s.val for s in self.sources)

    @property
    def points(self) -> int:
        """Points voxelized by this run."""
        return sum(s.points for s in self.sources)


@dataclass
class _Source:
    path: str
    layout: h5io.H5Layout
    stem: str


def _prepare_out(opts: ConvertOptions) -> tuple[Path, bool]:
    """Apply the resume/overwrite rules; returns (out, created) where created = the folder is new."""
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise MedgenError(f"--out {out} is a file, not a folder")
    busy = out.is_dir() and any(out.iterdir())
    if busy and not (opts.resume or opts.overwrite):
        raise MedgenError(f"output folder {out} already exists and is not empty",
                          "pass --resume to finish an interrupted conversion or --overwrite to replace it")
    if busy and opts.overwrite:
        for split in ("train", "val"):
            if (out / split).is_dir():
                shutil.rmtree(out / split)
        for name in ("manifest.json", OPTIONS_FILE, PROGRESS):
            (out / name).unlink(missing_ok=True)
    for split in ("train", "val"):  # stray temporaries of a killed run
        for tmp in (out / split).glob(".*.part*") if (out / split).is_dir() else []:
            tmp.unlink(missing_ok=True)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    return out, created and not opts.resume


def _open_sources(opts: ConvertOptions) -> list[_Source]:
    sources, stems = [], set()
    for p in opts.inputs:
        with h5io.open_h5(p) as f:
            layout = h5io.detect_layout(f, opts.key, opts.label_key)
        if opts.weights and layout.channels == 3 and layout.values_key is None:
            raise MedgenError(f"--weights: {p} has no per-point values", "drop --weights or add a value column")
        stem = Path(p).name.split(".")[0] or "cloud"
        k, base = 1, stem
        while stem in stems:
            k, stem = k + 1, f"{base}-{k}"
        stems.add(stem)
        sources.append(_Source(str(p), layout, stem))
    return sources


def _assign_splits(sources: list[_Source], val_fraction: float, seed: int) -> list[np.ndarray]:
    """Per source, a bool array: True = val. A seeded permutation of all clouds, in input order."""
    total = sum(s.layout.n for s in sources)
    n_val = int(round(val_fraction * total))
    if val_fraction > 0 and total >= 2:
        n_val = min(max(n_val, 1), total - 1)
    is_val = np.zeros(total, dtype=bool)
    is_val[np.random.default_rng(seed).permutation(total)[:n_val]] = True
    out, pos = [], 0
    for s in sources:
        out.append(is_val[pos: pos + s.layout.n])
        pos += s.layout.n
    return out


def _global_grid(opts: ConvertOptions, sources: list[_Source]) -> Grid | None:
    if opts.bounds is not None:
        lo, hi = np.asarray(opts.bounds[0]), np.asarray(opts.bounds[1])
        return fit_grid(lo, hi, opts.resolution, 0.0, opts.spacing)
    if opts.normalize == "none":
        return identity_grid(opts.resolution, opts.spacing)
    if opts.normalize != "dataset":
        return None
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for s in sources:
        with h5io.open_h5(s.path) as f:
            for start in range(0, s.layout.n, 256):
                for c in h5io.read_clouds(f, s.layout, start, min(start + 256, s.layout.n)):
                    pts = c.points[np.isfinite(c.points).all(axis=1)]
                    if len(pts):
                        lo, hi = np.minimum(lo, pts.min(0)), np.maximum(hi, pts.max(0))
    if not np.all(np.isfinite(lo)):
        raise MedgenError("no finite points in any input")
    try:
        return fit_grid(lo, hi, opts.resolution, opts.margin, opts.spacing)
    except DegenerateBounds as exc:
        raise MedgenError("--normalize dataset: all points of all clouds are identical (degenerate bounds)",
                          "use --bounds or --normalize none") from exc


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


def _convert_chunk(job: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int], list[dict[str, Any]]]:
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


def _load_previous(out: Path, opts: ConvertOptions) -> dict[tuple[str, int], dict[str, Any]]:
    """On ``--resume``: check the recorded options and return the finished records by (source, index)."""
    opt_file = out / OPTIONS_FILE
    if not opt_file.is_file():
        if any(out.iterdir()):
            raise MedgenError(f"{out} holds no {OPTIONS_FILE}: it was not written by convert-h5", "use --overwrite or another --out")
        return {}
    old = json.loads(opt_file.read_text())
    new = opts.signature()
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        raise MedgenError(f"--resume with different options than the first run: {', '.join(diff)}",
                          "use the same options, or --overwrite to start again")
    found: dict[tuple[str, int], dict[str, Any]] = {}
    manifest = out / "manifest.json"
    rows = json.loads(manifest.read_text()) if manifest.is_file() else []
    if (out / PROGRESS).is_file():
        for line in (out / PROGRESS).read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
    for r in rows:
        if (out / r["file"]).is_file():
            found[(str(Path(r["source"]).resolve()), int(r["index"]))] = r
    return found


def _jobs(opts: ConvertOptions, sources: list[_Source], grid: Grid | None, splits: list[np.ndarray],
          done: dict[tuple[str, int], dict[str, Any]], stats: list[SourceStats]) -> list[dict[str, Any]]:
    jobs = []
    for s, is_val, st in zip(sources, splits, stats):
        key_src = str(Path(s.path).resolve())
        for start in range(0, s.layout.n, opts.chunk):
            stop = min(start + opts.chunk, s.layout.n)
            todo = {}
            for i in range(start, stop):
                if (key_src, i) in done:
                    st.resumed += 1
                    continue
                split = "val" if is_val[i] else "train"
                todo[i] = (split, f"{split}/{s.stem}_{i:05d}.nii.gz")
            if todo:
                jobs.append({"opts": opts, "source": s.path, "layout": s.layout, "start": start, "stop": stop,
                             "todo": todo, "grid": grid, "out": opts.out})
    return jobs


def _pool_context() -> Any:
    # fork is fastest to start, but unsafe once torch has started its thread pools (tests, Python API).
    if sys.platform == "linux" and "torch" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _run_jobs(jobs: list[dict[str, Any]], workers: int, on_done: Callable[[dict[str, Any], tuple], None]) -> None:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            on_done(job, _convert_chunk(job))
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=_pool_context()) as pool:
        futures = {pool.submit(_convert_chunk, job): job for job in jobs}
        try:
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except MedgenError as exc:  # re-raise with its message intact (hints do not cross processes)
                    raise MedgenError(str(exc)) from None
                on_done(futures[fut], result)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def run_convert(opts: ConvertOptions, progress: bool = False) -> ConvertSummary:
    """Convert the inputs; see the module docstring for the rules.

    Args:
        opts: validated options (``opts.check()`` is called here).
        progress: show a rich progress bar on stderr.

    Raises:
        MedgenError: bad options, a bad input file, a busy output folder, or (``strict``) NaN/Inf.
    """
    opts.check()
    t0 = time.perf_counter()
    sources = _open_sources(opts)  # every input is checked before anything is written
    out, created = _prepare_out(opts)
    written: list[Path] = []
    try:
        done = _load_previous(out, opts) if opts.resume else {}
        grid = _global_grid(opts, sources)
        with atomic_path(out / OPTIONS_FILE) as tmp:
            tmp.write_text(json.dumps(opts.signature(), indent=1))
        stats = [SourceStats(s.path, s.layout.kind, s.layout.n) for s in sources]
        jobs = _jobs(opts, sources, grid, _assign_splits(sources, opts.val_fraction, opts.seed), done, stats)
        records, skipped = list(done.values()), []
        by_source = {s.path: st for s, st in zip(sources, stats)}
        bar = _progress(progress, sum(len(j["todo"]) for j in jobs))
        with bar, open(out / PROGRESS, "a") as log:
            task = bar.add_task("convert-h5", total=sum(len(j["todo"]) for j in jobs)) if bar else None

            def on_done(job: dict[str, Any], result: tuple) -> None:
                recs, counts, skips = result
                by_source[job["source"]].add(counts)
                for r in recs:
                    log.write(json.dumps(r) + "\n")
                    written.append(out / r["file"])
                log.flush()
                records.extend(recs)
                skipped.extend(skips)
                if bar:
                    bar.advance(task, len(job["todo"]))

            _run_jobs(jobs, opts.workers, on_done)
        records.sort(key=lambda r: (r["source"], r["index"]))
        with atomic_path(out / "manifest.json") as tmp:
            tmp.write_text(json.dumps(records, indent=1))
        (out / PROGRESS).unlink(missing_ok=True)
    except MedgenError:
        if not opts.resume:
            _remove_partial(out, created, written)
        raise
    return ConvertSummary(out, stats, time.perf_counter() - t0, len(records), skipped)


def _remove_partial(out: Path, created: bool, written: list[Path]) -> None:
    """A fresh run that failed: remove what it wrote (and the folder when it made it)."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in written:
        p.unlink(missing_ok=True)
    for name in (OPTIONS_FILE, PROGRESS):
        (out / name).unlink(missing_ok=True)


class _NoBar:
    def __bool__(self) -> bool:
        return False

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(show: bool, total: int) -> Any:
    if not show or total == 0:
        return _NoBar()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)


def summary_table(summary: ConvertSummary) -> Any:
    """A rich table: one row per input, then the totals and throughput."""
    from rich.table import Table

    cols = ("input", "layout", "clouds", "train", "val", "resumed", "empty", "degenerate", "outside",
            "NaN/Inf pts", "outside pts")
    table = Table(title=f"convert-h5 → {summary.out}", title_justify="left")
    for c in cols:
        table.add_column(c, justify="left" if c in ("input", "layout") else "right")
    for s in summary.sources:
        table.add_row(os.path.basename(s.source), s.layout, str(s.clouds), str(s.train), str(s.val), str(s.resumed),
                      str(s.empty), str(s.degenerate), str(s.outside_all), str(s.nonfinite_points), str(s.outside_points))
    secs = max(summary.seconds, 1e-9)
    table.caption = (f"{summary.written} volume(s) written in {summary.seconds:.1f} s "
                     f"({summary.written / secs:.1f} volumes/s, {summary.points / secs:,.0f} points/s); "
                     f"manifest: {summary.records} record(s)")
    return table
