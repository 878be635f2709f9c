"""The classical sparse-view CBCT reconstructors, diffct's FDK and SIRT: ``medgen recon --method
fdk|sirt``, ``medgen eval recon`` and the baselines the model is compared with in the tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from medgen_cli.data.cbct.grids import values_at_points
from medgen_cli.data.cbct.io import CBCTCase, view_indices
from medgen_cli.errors import MedgenError
from medgen_cli.recon.base import Track

#: The methods ``medgen recon`` / ``eval recon`` run without a trained model.
CLASSICAL = ("fdk", "sirt")


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


@dataclass(frozen=True)
class _Classical:
    """Shared by :class:`FDK` and :class:`SIRT`: ``views`` evenly spread of a case's stored
    projections (the same ones the model uses), the volume on the case's grid, its values at
    query points. ``track`` shows the work as one step with its elapsed time (a SIRT callback
    per iteration would cost diffct one more projection per iteration)."""

    views: int = 10
    track: Track | None = None
    name: ClassVar[str] = ""

    def values(self, case: CBCTCase, points: np.ndarray | None = None) -> np.ndarray:
        """The ``(z, y, x)`` volume on the case grid, or its values at normalised ``(P, 3)`` points."""
        vol = self.volume(case)
        return vol if points is None else values_at_points(vol, points)

    def volume(self, case: CBCTCase) -> np.ndarray:
        """The ``(z, y, x)`` reconstruction on the case's grid, float32."""
        import torch

        idx = view_indices(len(case.angles), self.views)
        angles = torch.as_tensor(case.angles[idx], dtype=torch.float32)
        sino = torch.as_tensor(case.projections[idx], dtype=torch.float32)
        ticks = Ticks(self.track, 1, f"{self.description()} on the {case.geometry.volume_size}³ grid")
        with torch.no_grad():
            vol = self._solve(case, sino, angles)
        ticks.close()
        return vol.cpu().numpy().astype(np.float32)

    def description(self) -> str:
        raise NotImplementedError

    def _solve(self, case: CBCTCase, sino: Any, angles: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class FDK(_Classical):
    """diffct's flat-detector FDK (ram-lak, angular weights from the actual view angles)."""

    name: ClassVar[str] = "fdk"

    def description(self) -> str:
        return "FDK"

    def _solve(self, case: CBCTCase, sino: Any, angles: Any) -> Any:
        from diffct import fdk

        geo, n = case.geometry, case.geometry.volume_size
        return fdk(sino, geo.trajectory(angles), (n, n, n), angles, detector_spacing=geo.detector_spacing,
                   voxel_spacing=geo.voxel_spacing, backend="torch")


@dataclass(frozen=True)
class SIRT(_Classical):
    """diffct's row/column-normalised SIRT with a non-negativity constraint, ``iterations`` steps."""

    iterations: int = 50
    name: ClassVar[str] = "sirt"

    def description(self) -> str:
        return f"SIRT, {self.iterations} iterations,"

    def _solve(self, case: CBCTCase, sino: Any, angles: Any) -> Any:
        from diffct import sirt

        return sirt(case.geometry.projector(angles), sino, iterations=self.iterations).volume


def classical(method: str, views: int = 10, iterations: int = 50, track: Track | None = None) -> FDK | SIRT:
    """The reconstructor of ``method`` (``fdk`` or ``sirt``)."""
    if method == "fdk":
        return FDK(views, track)
    if method == "sirt":
        return SIRT(views, track, iterations)
    raise MedgenError(f"unknown reconstruction method '{method}'", "use fdk or sirt")


def classical_recon(case: CBCTCase, num_views: int, method: str = "fdk", iterations: int = 50,
                    track: Track | None = None) -> np.ndarray:
    """FDK or SIRT reconstruction ``(z, y, x)`` of a case from ``num_views`` evenly spread views."""
    return classical(method, num_views, iterations, track).volume(case)

