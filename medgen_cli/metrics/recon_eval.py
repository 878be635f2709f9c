"""``medgen eval recon`` as a library call: reconstruct every case of a folder with a dif-gaussian
run (or a classical FDK/SIRT baseline) and score it with PSNR/SSIM (:mod:`medgen_cli.metrics.recon`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.families.dif_gaussian.config import QUERY_CHUNK

METHODS = ("model", "fdk", "sirt")
Track = Callable[[Iterable[Any], int, str], Iterable[Any]]


def _load_model(run: Path | None, method: str, checkpoint: str, device: str) -> Any:
    """The loaded dif-gaussian run for ``method="model"``; ``None`` for a classical baseline."""
    if method not in METHODS:
        raise MedgenError(f"unknown method '{method}'", "use model, fdk or sirt")
    if method != "model":
        return None
    if run is None:
        raise MedgenError("give a RUN directory (or --method fdk|sirt for a classical baseline)")
    from medgen_cli.engine.run_loading import load_run

    loaded = load_run(run, checkpoint=checkpoint, device=device)
    if loaded.family.name != "dif-gaussian":
        raise MedgenError(f"{run} is a '{loaded.family.name}' run; eval recon needs a dif-gaussian run")
    if loaded.family.geometry is None:
        raise MedgenError(f"{run} has no CBCT geometry in its checkpoint", "train it with medgen train dif-gaussian")
    return loaded


def _reconstruct(loaded: Any, method: str, case: Any, views: int, iterations: int, chunk: int) -> np.ndarray:
    """Volume ``(z, y, x)`` on the case grid."""
    from medgen_cli.families.dif_gaussian.recon import classical_values

    if method == "model":
        net = loaded.ctx.eval_module("model")
        return loaded.family.reconstruct_case(net, case, views, resolution=case.geometry.volume_size,
                                              chunk=chunk).cpu().numpy()
    return classical_values(case, views, method, iterations, None)


def evaluate_recon(run: Path | None, data: Path, views: int | None, method: str = "model", checkpoint: str = "best",
                   iterations: int = 50, chunk: int = QUERY_CHUNK, device: str = "auto",
                   track: Track | None = None) -> dict[str, Any]:
    """Reconstruct every case file in ``data`` and score it against its volume.

    Args:
        run: a dif-gaussian run (``method="model"``), else ``None``.
        data: a folder of case files (``medgen data make-cbct`` output, e.g. ``DIR/test``).
        views: projections to use (default: the run's largest; 10 for the baselines).
        method: ``model``, ``fdk`` or ``sirt``.
        checkpoint: ``best``, ``latest`` or a checkpoint path.
        iterations: SIRT iterations.
        chunk: points per model forward pass.
        device: see :mod:`medgen_cli.devices`.
        track: progress wrapper ``track(iterable, total, description)``.

    Returns:
        ``{"method", "run", "checkpoint" (the one used, ``None`` for fdk/sirt), "views", "data",
        "data_range", "cases": [{case, psnr, ssim, seconds}], "mean"}``.
    """
    from medgen_cli.data import cbct
    from medgen_cli.metrics.recon import recon_metrics

    loaded = _load_model(run, method, checkpoint, device)
    if views is None:
        views = loaded.family.cfg.data.num_views[-1] if loaded else 10
    if loaded is not None:
        loaded.family.check_views(views)
    # The baselines and the model's FDK branch both use diffct, whose first import takes seconds:
    # keep it out of the first case's time.
    import diffct  # noqa: F401
    rows = []
    files = cbct.list_cases(data)
    for f in (track or (lambda it, total, description: it))(files, len(files), f"{method} {views} views"):
        case = cbct.read_case(f)
        t0 = time.perf_counter()
        vol = _reconstruct(loaded, method, case, views, iterations, chunk)
        seconds = time.perf_counter() - t0
        rows.append({"case": case.name, **recon_metrics(vol, case.volume), "seconds": seconds})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "seconds")}
    used = loaded.source.describe() if loaded is not None and loaded.source is not None else None
    return {"method": method, "run": str(run) if run else None, "checkpoint": used, "views": views,
            "data": str(data), "data_range": 1.0, "cases": rows, "mean": mean}
