"""CBCT data: CT volumes → windowed grids + simulated cone-beam projections, one H5 per case.

Modules (none imports torch at module level except ``datasets``):

* :mod:`~medgen_cli.data.cbct.geometry` — the scan (:class:`CBCTGeometry`: source, detector,
  grid) and the diffct projector;
* :mod:`~medgen_cli.data.cbct.phantoms` — the HU window and synthetic phantoms in HU;
* :mod:`~medgen_cli.data.cbct.grids` — resampling a CT onto the grid, normalised voxel coordinates;
* :mod:`~medgen_cli.data.cbct.poses` — random rigid-plus-scale poses (augmentation);
* :mod:`~medgen_cli.data.cbct.io` — case files (:class:`CBCTCase`, read/write), simulated
  projections, the view-selection rule;
* :mod:`~medgen_cli.data.cbct.build` — ``medgen data make-cbct``: a dataset from volumes;
* :mod:`~medgen_cli.data.cbct.datasets` — a split of case files as a torch dataset.

The names below are the package's public API (``from medgen_cli.data import cbct``;
``cbct.read_case(path)``); each is defined once, in the module named above.
"""

from medgen_cli.data.cbct.build import SPLITS, assign_splits, case_warning, make_cbct, nifti_sources, synthetic_sources
from medgen_cli.data.cbct.geometry import CBCTGeometry, load_geometry
from medgen_cli.data.cbct.grids import grid_affine, resample_to_grid
from medgen_cli.data.cbct.io import CBCTCase, list_cases, read_case, simulate, view_indices, write_case
from medgen_cli.data.cbct.phantoms import HU_WINDOW, phantom_hu, window

__all__ = ["CBCTCase", "CBCTGeometry", "HU_WINDOW", "SPLITS", "assign_splits", "case_warning", "grid_affine",
           "list_cases", "load_geometry", "make_cbct", "nifti_sources", "phantom_hu", "read_case",
           "resample_to_grid", "simulate", "synthetic_sources", "view_indices", "window", "write_case"]
