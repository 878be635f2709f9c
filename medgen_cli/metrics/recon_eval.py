"""Scoring reconstructions of case files (``medgen eval recon``): PSNR/SSIM of each case against
its volume (:mod:`medgen_cli.metrics.recon`), the time each took, and the means. Which
reconstructor (a run's or FDK/SIRT) is the caller's (:func:`medgen_cli.engine.recon.evaluate_recon`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from medgen_cli.data.cbct.io import CBCTCase, read_case
from medgen_cli.metrics.recon import recon_metrics
from medgen_cli.recon.base import Track


def score_cases(files: Sequence[Path], reconstruct: Callable[[CBCTCase], np.ndarray], description: str,
                track: Track | None = None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Reconstruct each case file and score it against its volume.

    Args:
        files: case files (``medgen data make-cbct`` output).
        reconstruct: case → ``(z, y, x)`` volume on the case grid; timed alone (not the reading).
        description: the progress bar's text.
        track: progress wrapper ``track(iterable, total, description)``.

    Returns:
        ``([{case, psnr, ssim, seconds}], {psnr, ssim, seconds} means)``.
    """
    rows = []
    for f in (track or (lambda it, total, text: it))(files, len(files), description):
        case = read_case(f)
        t0 = time.perf_counter()
        vol = reconstruct(case)
        seconds = time.perf_counter() - t0
        rows.append({"case": case.name, **recon_metrics(vol, case.volume), "seconds": seconds})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "seconds")}
    return rows, mean
