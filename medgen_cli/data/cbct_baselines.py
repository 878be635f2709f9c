"""Classical sparse-view CBCT baselines (diffct's FDK and SIRT) on case files, for ``medgen recon
--method fdk|sirt``, ``medgen eval recon`` and the comparisons in the tests."""

from __future__ import annotations

import numpy as np

from medgen_cli.data.cbct import CBCTCase, view_indices
from medgen_cli.errors import MedgenError


def classical_recon(case: CBCTCase, num_views: int, method: str = "fdk", iterations: int = 50) -> np.ndarray:
    """FDK or SIRT reconstruction ``(z, y, x)`` of a case from ``num_views`` evenly spread views.

    FDK: diffct's flat-detector FDK (ram-lak, angular weights from the actual view angles).
    SIRT: diffct's row/column-normalised SIRT with a non-negativity constraint, ``iterations`` steps.
    """
    import torch
    from diffct import fdk, sirt

    geo = case.geometry
    idx = view_indices(len(case.angles), num_views)
    ang = torch.as_tensor(case.angles[idx], dtype=torch.float32)
    sino = torch.as_tensor(case.projections[idx], dtype=torch.float32)
    n = geo.volume_size
    with torch.no_grad():
        if method == "fdk":
            vol = fdk(sino, geo.trajectory(ang), (n, n, n), ang, detector_spacing=geo.detector_spacing,
                      voxel_spacing=geo.voxel_spacing, backend="torch")
        elif method == "sirt":
            vol = sirt(geo.projector(ang), sino, iterations=iterations).volume
        else:
            raise MedgenError(f"unknown reconstruction method '{method}'", "use fdk or sirt")
    return vol.cpu().numpy().astype(np.float32)
