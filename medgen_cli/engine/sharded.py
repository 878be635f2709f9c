"""``medgen sample --nproc K``: the seeds of one request split over torchrun processes.

The request's batches (``--batch-size`` samples from consecutive seeds, exactly the batches one
process would generate) are dealt round-robin to the ranks: batch ``b`` goes to rank
``b % world``. Each rank generates its batches with the family's own ``sample`` (``num`` = the
batch, ``seed`` = its first seed) and writes their files itself, so no sample array travels
between processes and memory stays one batch per rank. After every round the ranks add up how many
samples are done (rank 0's bar shows the global count); at the end rank 0 gathers the manifest
entries and the first samples for the preview and writes ``manifest.json`` and ``preview/``.
Because sample ``i`` depends on seed ``seed + i`` alone and the batches are the same, the folder
holds the same files, bytes and manifest as a single process writes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medgen_cli.engine.outputs import (PREVIEW_DIR, Written, check_folders, check_writable_samples,
                                       preview_count, write_files, write_manifest, write_previews)
from medgen_cli.contract.options import PointsThreshold, SampleOptions
from medgen_cli.contract.samples import Samples


def batch_starts(num: int, batch_size: int) -> list[tuple[int, int]]:
    """``(first index, count)`` of each batch of a request for ``num`` samples."""
    return [(s, min(batch_size, num - s)) for s in range(0, num, batch_size)]


def rank_batches(num: int, batch_size: int, rank: int, world: int) -> list[tuple[int, int] | None]:
    """This rank's batch per round (``None``: nothing left this round); every rank gets the same
    number of rounds, so the per-round count can be summed over ranks."""
    batches = batch_starts(num, batch_size)
    rounds = -(-len(batches) // world)
    return [batches[b] if (b := r * world + rank) < len(batches) else None for r in range(rounds)]


def check_sharded(run: str | Path, flags: dict[str, Any], out: str | Path | None, checkpoint: str,
                  overwrite: bool) -> Path:
    """What the relaunching process checks before starting torchrun, so a bad flag, run or
    ``--out`` is one line (exit 2) instead of one per rank; returns the output folder (the
    default one is fixed here, so every rank writes into the same timestamped folder).

    Raises:
        MedgenError: ``--input`` (a reconstruction is one item), or what a single process refuses.
    """
    from medgen_cli.engine.inference import options_for
    from medgen_cli.engine.run_loading import default_out, load_run
    from medgen_cli.errors import MedgenError

    if "input" in flags:
        raise MedgenError("--nproc splits the seeds of a sampling request; a reconstruction (--input) is one item",
                          "drop --nproc")
    loaded = load_run(run, checkpoint=checkpoint, device="cpu")  # the ranks pick their own devices
    opts = options_for(loaded.family, "sample", flags)
    target = Path(out) if out is not None else default_out(loaded.run_dir, "samples")
    check_folders(target, opts.format, overwrite)
    return target


def sample_sharded(run: str | Path, flags: dict[str, Any], out: str | Path | None = None, checkpoint: str = "best",
                   device: str = "auto", overwrite: bool = False) -> Any:
    """One rank's part of a sharded ``medgen sample`` (every rank calls it under torchrun).

    Returns:
        On rank 0 the :class:`~medgen_cli.engine.inference.InferenceResult` (``samples`` holds the
        previewed samples only); ``None`` on the other ranks.

    Raises:
        MedgenError: as :func:`~medgen_cli.engine.inference.infer_to_dir` (every rank raises it,
            before any file is written).
    """
    import torch
    import torch.distributed as dist

    from medgen_cli.devices import resolve_device
    from medgen_cli.engine.distributed import broadcast_object, env_world, init_distributed
    from medgen_cli.engine.inference import InferenceResult, options_for
    from medgen_cli.engine.run_loading import default_out, load_run

    rank, local_rank, world = env_world()
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # NCCL collectives (and gather_object) use the current device
    init_distributed(dev)
    loaded = load_run(run, checkpoint=checkpoint, device=str(dev))
    opts = options_for(loaded.family, "sample", flags)
    assert isinstance(opts, SampleOptions)
    target = Path(broadcast_object(str(out if out is not None else default_out(loaded.run_dir, "samples"))))
    folders = check_folders(target, opts.format, overwrite)
    dist.barrier()  # every rank has checked before rank 0 (or any) writes
    ctx = replace(loaded.ctx, progress=None)  # one global bar on rank 0 instead of one per rank
    threshold = opts.threshold if isinstance(opts, PointsThreshold) else 0.5
    shown, entries = _generate(loaded.family, ctx, opts, folders, threshold, overwrite, rank, world, dev)
    gathered = [None] * world if rank == 0 else None
    dist.gather_object((entries, shown), gathered, dst=0)
    result = None
    if rank == 0:
        result = _finish(loaded, target, folders, gathered, overwrite)  # type: ignore[arg-type]
    dist.barrier()
    dist.destroy_process_group()
    return None if result is None else InferenceResult(loaded=loaded, out=target, written=result[0],
                                                       samples=result[1])


def _generate(family: Any, ctx: Any, opts: SampleOptions, folders: dict[str, Path], threshold: float,
              overwrite: bool, rank: int, world: int, dev: Any) -> tuple[list[tuple[int, Samples]], list[Any]]:
    """Generate and write this rank's batches; returns the (first index, samples) kept for the
    preview and ``(first index, {format: entries})`` per batch."""
    import torch
    import torch.distributed as dist

    from medgen_cli.engine.inference import run_task
    from medgen_cli.progress import Bars

    shown: list[tuple[int, Samples]] = []
    entries: list[Any] = []
    with Bars(enabled=rank == 0) as bars:
        advance = bars.factory(f"sampling on {world} processes", opts.num)
        for batch in rank_batches(opts.num, opts.batch_size, rank, world):
            done = torch.zeros(1, dtype=torch.int64, device=dev)
            if batch is not None:
                start, count = batch
                sub = opts.model_copy(update={"num": count, "seed": opts.seed + start})
                samples = run_task(family, ctx, "sample", sub)
                check_writable_samples(samples, folders, overwrite)
                _, batch_entries = write_files(samples, folders, threshold, overwrite)
                entries.append((start, batch_entries))
                cap = preview_count(samples.spatial_dims)
                if start < cap:
                    shown.append((start, _head(samples, cap - start)))
                done += count
            dist.all_reduce(done)
            advance(int(done.item()))
    return shown, entries


def _head(samples: Samples, n: int) -> Samples:
    """The first ``n`` items of ``samples``."""
    return Samples(arrays=samples.arrays[:n], names=samples.names[:n], seeds=samples.seeds[:n],
                   labels=samples.labels[:n], affine=samples.affine, preview=samples.preview,
                   value_range=samples.value_range, extra=None if samples.extra is None else samples.extra[:n])


def _finish(loaded: Any, target: Path, folders: dict[str, Path], gathered: list[Any],
            overwrite: bool) -> tuple[Written, Samples]:
    """Rank 0: the manifests (entries in seed order) and previews from every rank's part."""
    batches = sorted((b for entries, _ in gathered for b in entries), key=lambda b: b[0])
    parts = sorted((p for _, shown in gathered for p in shown), key=lambda p: p[0])
    written = Written(folders=folders)
    for fmt, folder in folders.items():
        entries = [e for _, per_format in batches for e in per_format[fmt]]
        written.files += [folder / e["file"] for e in entries]
        written.manifests.append(write_manifest(folder, entries, overwrite))
    first = [s for _, s in parts]
    shown = Samples(arrays=np.concatenate([s.arrays for s in first]), names=[n for s in first for n in s.names],
                    seeds=[x for s in first for x in s.seeds], labels=[x for s in first for x in s.labels],
                    affine=first[0].affine, value_range=first[0].value_range)
    written.previews = write_previews(shown, target / PREVIEW_DIR)
    return written, shown
