"""Sparse 3D tensors behind one small interface, with two backends.

* ``torch`` — pure PyTorch (any device): coordinates hashed to sorted int64 keys and looked up
  with ``searchsorted``; convolutions gather the input rows of each kernel offset, multiply by
  that offset's weight and scatter-add into the output rows.
* ``minkowski`` — MinkowskiEngine 0.5.4 (``scripts/build_minkowski.sh`` builds a CPU wheel).

Both share parameter names and layouts, so weights (and checkpoints) move between them. The
operations: ``Conv`` (stride 1: same coordinates; stride 2: strided), ``GenerativeUp`` (each
voxel → its 2³ children), ``Linear`` (1×1 conv), ``BatchNorm``, ``Activation``, and
``prune``, ``global_pool``, ``union``, ``to_dense``, ``from_dense``.

Example::

    from medgen_cli.sparse import get_backend
    sp = get_backend("auto")
    x = sp.from_dense(volume[None, None], threshold=0.1)      # [1, 1, D, H, W] → sparse
    y = sp.Conv(1, 8, kernel_size=3, stride=2)(x)             # 8 channels at stride 2
"""

from __future__ import annotations

from medgen_cli.sparse.backend import (
    BACKENDS,
    get_backend,
    minkowski_available,
    minkowski_status,
    resolve_backend_name,
)

__all__ = ["BACKENDS", "SparseTensor", "get_backend", "minkowski_available", "minkowski_status",
           "resolve_backend_name"]


def __getattr__(name: str):  # SparseTensor needs torch: import it on first use only
    if name == "SparseTensor":
        from medgen_cli.sparse.tensor import SparseTensor

        return SparseTensor
    raise AttributeError(name)
