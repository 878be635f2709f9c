"""What a reconstructor is, for :mod:`medgen_cli.recon`: FDK and SIRT here, a trained model's
reconstruction in its family (``dif-gaussian``); each turns a case's projections into values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

if TYPE_CHECKING:
    import numpy as np

    from medgen_cli.data.cbct.io import CBCTCase

#: ``track(iterable, total, description)``: a progress wrapper (e.g. :func:`medgen_cli.progress.track`).
Track = Callable[[Iterable[Any], int, str], Iterable[Any]]


class Reconstructor(Protocol):
    """Reconstructs a case from ``views`` evenly spread of its projections
    (:func:`medgen_cli.data.cbct.io.view_indices`)."""

    #: ``fdk``, ``sirt`` or ``model`` (the ``--method`` that selects it).
    name: str
    views: int

    def values(self, case: CBCTCase, points: np.ndarray | None = None) -> np.ndarray:
        """The ``(z, y, x)`` volume on the case's grid, or its values at normalised ``(P, 3)``
        points (:func:`medgen_cli.data.cbct.grids.normalized_grid` coordinates), in [0, 1]."""
        ...
