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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medgen_cli.data import h5io
from medgen_cli.data.convert_options import ConvertOptions, ConvertSummary, SourceStats
from medgen_cli.data.convert_report import progress_bar
from medgen_cli.data.convert_worker import convert_chunk, init_worker, workers_born_ignoring_sigint
from medgen_cli.data.voxelize import DegenerateBounds, Grid, fit_grid, identity_grid
from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path, disk_full_error, is_disk_full

PROGRESS = ".progress.jsonl"
OPTIONS_FILE = "convert.json"
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
    for split in ("train", "val"):
        (out / split).mkdir(parents=True, exist_ok=True)
    return out, created and not opts.resume


def _open_sources(opts: ConvertOptions) -> list[_Source]:
    sources, stems = [], set()
    for p in opts.inputs:
        with h5io.open_h5(p) as f:
            layout = h5io.detect_layout(f, opts.key, opts.label_key)
        if layout.n == 0:
            raise MedgenError(f"{p} holds no samples ('{layout.key or '/'}' has 0 clouds)",
                              "check the file (medgen data inspect) or drop it from the inputs")
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


def _recorded_options(opts: ConvertOptions, sources: list[_Source]) -> dict[str, Any]:
    # The cloud counts are part of it: a grown input would reshuffle the train/val split.
    return {**opts.signature(), "clouds": [s.layout.n for s in sources]}


def _load_previous(out: Path, opts: ConvertOptions, sources: list[_Source]) -> dict[tuple[str, int], dict[str, Any]]:
    """On ``--resume``: check the recorded options and return the finished records by (source, index)."""
    opt_file = out / OPTIONS_FILE
    if not opt_file.is_file():
        if any(p.is_file() for p in out.rglob("*")):
            raise MedgenError(f"{out} holds no {OPTIONS_FILE}: it was not written by convert-h5", "use --overwrite or another --out")
        return {}
    old = json.loads(opt_file.read_text())
    new = _recorded_options(opts, sources)
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
    # fork starts workers fastest and lets the parent account their CPU time. It is unsafe once
    # torch has started its thread pools (tests, the Python API): spawn then. rich's progress
    # thread is harmless: workers never touch the console.
    if sys.platform == "linux" and "torch" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _run_jobs(jobs: list[dict[str, Any]], workers: int, on_done: Callable[[dict[str, Any], tuple], None]) -> None:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            on_done(job, convert_chunk(job))
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=_pool_context(),
                             initializer=init_worker, initargs=(os.getpid(),)) as pool:
        with workers_born_ignoring_sigint():  # submit() starts the worker processes
            futures = {pool.submit(convert_chunk, job): job for job in jobs}
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
    try:
        done = _load_previous(out, opts, sources) if opts.resume else {}
        grid = _global_grid(opts, sources)
        with atomic_path(out / OPTIONS_FILE) as tmp:
            tmp.write_text(json.dumps(_recorded_options(opts, sources), indent=1))
        stats = [SourceStats(s.path, s.layout.kind, s.layout.n) for s in sources]
        jobs = _jobs(opts, sources, grid, _assign_splits(sources, opts.val_fraction, opts.seed), done, stats)
        records, skipped = list(done.values()), []
        by_source = {s.path: st for s, st in zip(sources, stats)}
        bar = progress_bar(progress, sum(len(j["todo"]) for j in jobs))
        with bar, open(out / PROGRESS, "a") as log:
            task = bar.add_task("convert-h5", total=sum(len(j["todo"]) for j in jobs)) if bar else None

            def on_done(job: dict[str, Any], result: tuple) -> None:
                recs, counts, skips = result
                by_source[job["source"]].add(counts)
                for r in recs:
                    log.write(json.dumps(r) + "\n")
                log.flush()
                records.extend(recs)
                skipped.extend(skips)
                if bar:
                    bar.advance(task, len(job["todo"]))

            _run_jobs(jobs, opts.workers, on_done)
        records.sort(key=lambda r: (r["source"], r["index"]))
        with atomic_path(out / "manifest.json") as tmp:  # one record per line: readable and diffable
            tmp.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
        (out / PROGRESS).unlink(missing_ok=True)
    except Exception as exc:  # not KeyboardInterrupt: an interrupted run stays resumable
        if is_disk_full(exc):  # finished volumes and their records stay: --resume completes the rest
            raise disk_full_error(exc, out, "then run the same command again with --resume "
                                            "(finished volumes are kept)") from exc
        if not opts.resume:
            _remove_partial(out, created)
        raise
    return ConvertSummary(out, stats, time.perf_counter() - t0, len(records), skipped)


def _remove_partial(out: Path, created: bool) -> None:
    """A fresh run that failed: remove what it wrote (and the folder when it made it).

    Everything under ``train/`` and ``val/`` belongs to this run (the folder was empty or was
    cleared by ``--overwrite``), including files that workers still finished after the error.
    """
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for split in ("train", "val"):
        shutil.rmtree(out / split, ignore_errors=True)
    for name in (OPTIONS_FILE, PROGRESS):
        (out / name).unlink(missing_ok=True)
