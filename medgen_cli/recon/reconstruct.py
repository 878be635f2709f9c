"""The shared reconstruct path of ``medgen recon``: one input file (:mod:`medgen_cli.recon.inputs`)
and a reconstructor (:class:`~medgen_cli.recon.base.Reconstructor`: FDK, SIRT, or a dif-gaussian
run's inside its family ``recon``) → :class:`~medgen_cli.contract.samples.Samples` of one volume
in NIfTI ``(x, y, z)`` order with the input's affine, and PSNR/SSIM when the input holds the truth.

The engine (:mod:`medgen_cli.engine.recon`) loads runs and writes the file with the shared writers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from medgen_cli.contract.samples import Samples
from medgen_cli.data.cbct.geometry import CBCTGeometry
from medgen_cli.data.cbct.io import read_case
from medgen_cli.errors import MedgenError
from medgen_cli.recon.base import Reconstructor, Track
from medgen_cli.recon.classical import CLASSICAL, classical
from medgen_cli.recon.inputs import input_geometry, is_nifti, nifti_case

#: ``--method`` values: a run's model, or a classical reconstructor.
METHODS = ("model", *CLASSICAL)


def geometry_note(geometry: CBCTGeometry, source: str, method: str, views: int) -> str:
    """One line naming the geometry and grid a reconstruction uses (the cost grows with the grid³)."""
    return (f"{method}: {views} views on {source}: {geometry.volume_size}³ grid at {geometry.voxel_spacing:g} mm, "
            f"{geometry.detector_size}² detector at {geometry.detector_spacing:g} mm")


def check_request(method: str, run: Path | None, iterations: int | None, model_options: Sequence[str],
                  geometry: Path | None) -> None:
    """Refuse an unknown method and options the method does not take (one line each), before any work.
    ``model_options``: names of the run family's recon options given (``chunk``, ``tile``, ...).

    Raises:
        MedgenError: unknown method, a model without a run, or an option of another method.
    """
    if method not in METHODS:
        raise MedgenError(f"unknown method '{method}'", "use model, fdk or sirt")
    if iterations is not None and method != "sirt":
        raise MedgenError("--iterations only applies to --method sirt")
    if method in CLASSICAL:
        if model_options:
            raise MedgenError(f"--{model_options[0].replace('_', '-')} only applies to --method model")
        return
    if run is None:
        raise MedgenError("give a RUN directory (or --method fdk|sirt for a classical baseline)")
    if geometry is not None:
        raise MedgenError("--geometry is for --method fdk|sirt", "a run reconstructs with the geometry it was trained on")


def reconstruct_file(path: Path, reconstructor: Reconstructor, geometry: CBCTGeometry, track: Track | None = None,
                     **extra: Any) -> Samples:
    """``path`` reconstructed by ``reconstructor``: a case file on its own grid, a NIfTI volume on
    its voxels (``geometry``: the grid it is resampled to and simulated on).

    Returns:
        :class:`Samples` of one volume ``recon_<name>`` with the input's affine; its manifest entry
        holds ``input``, ``views``, the ``extra`` fields and, for a case file, ``psnr``/``ssim``
        against the case volume.
    """
    from medgen_cli.metrics.recon import recon_metrics

    path = Path(path)
    metrics: dict[str, float] = {}
    if is_nifti(path):
        case, affine, points, shape = nifti_case(path, geometry, reconstructor.views, track)
        vol = reconstructor.values(case, points).reshape(shape)
    else:
        case = read_case(path)
        grid = reconstructor.values(case, None)
        vol, affine, metrics = grid.transpose(2, 1, 0), np.asarray(case.affine), recon_metrics(grid, case.volume)
    entry = {"input": str(path), "views": reconstructor.views, **extra, **metrics}
    return Samples(arrays=vol[None, None], names=[f"recon_{path.name.split('.')[0]}"], seeds=[None], labels=[None],
                   affine=affine, extra=[entry])


def reconstruct_classical(input_path: Path, method: str, views: int, geometry: Path | None, iterations: int,
                          say: Callable[[str], None], track: Track | None = None) -> Samples:
    """FDK/SIRT on one input (no run), after one note naming the geometry and grid it uses."""
    geo, source = input_geometry(Path(input_path), geometry)
    say(f"note: {geometry_note(geo, source, method, views)}")
    return reconstruct_file(Path(input_path), classical(method, views, iterations, track), geo, track, method=method)
