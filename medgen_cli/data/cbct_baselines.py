"""Classical sparse-view CBCT baselines (diffct's FDK and SIRT) on case files, for ``medgen recon
--method fdk|sirt``, ``medgen eval recon`` and the comparisons in the tests."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from medgen_cli.data.cbct import CBCTCase, view_indices
from medgen_cli.errors import MedgenError

#: ``track(iterable, total, description)``: a progress wrapper (e.g. :func:`medgen_cli.progress.track`).
Track = Callable[[Iterable[Any], int, str], Iterable[Any]]


class Ticks:
    """A progress bar of ``total`` steps driven by calls, for work that is not a loop of ours,
    through an iterable ``track``: each call advances it; :meth:`close` completes it."""

    def __init__(self, track: Track | None, total: int, description: str) -> None:
        self._it = iter(track(range(total), total, description)) if track is not None else iter(())
        next(self._it, None)   # shows the bar at 0 / total

    def __call__(self, *_: Any) -> None:
        next(self._it, None)

    def close(self) -> None:
        for _ in self._it:   # the last step, and the bar's own clean-up
            pass


def classical_recon(case: CBCTCase, num_views: int, method: str = "fdk", iterations: int = 50,
                    track: Track | None = None) -> np.ndarray:
    """FDK or SIRT reconstruction ``(z, y, x)`` of a case from ``num_views`` evenly spread views.

    FDK: diffct's flat-detector FDK (ram-lak, angular weights from the actual view angles).
    SIRT: diffct's row/column-normalised SIRT with a non-negativity constraint, ``iterations`` steps.
    ``track`` shows the progress as one step with its elapsed time (a SIRT callback per iteration
    would cost diffct one more projection per iteration).
    """
    import torch
    from diffct import fdk, sirt

    if method not in ("fdk", "sirt"):
        raise MedgenError(f"unknown reconstruction method '{method}'", "use fdk or sirt")
    geo = case.geometry
    idx = view_indices(len(case.angles), num_views)
    ang = torch.as_tensor(case.angles[idx], dtype=torch.float32)
    sino = torch.as_tensor(case.projections[idx], dtype=torch.float32)
    n = geo.volume_size
    what = "FDK" if method == "fdk" else f"SIRT, {iterations} iterations,"
    ticks = Ticks(track, 1, f"{what} on the {n}³ grid")
    with torch.no_grad():
        if method == "fdk":
            vol = fdk(sino, geo.trajectory(ang), (n, n, n), ang, detector_spacing=geo.detector_spacing,
                      voxel_spacing=geo.voxel_spacing, backend="torch")
        else:
            vol = sirt(geo.projector(ang), sino, iterations=iterations).volume
    ticks.close()
    return vol.cpu().numpy().astype(np.float32)
