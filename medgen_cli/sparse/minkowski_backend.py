"""MinkowskiEngine backend (the user's original choice; CPU build via scripts/build_minkowski.sh).

Each module takes and returns :class:`SparseTensor`; the MinkowskiEngine tensor rides along in
``SparseTensor.native`` so consecutive layers share its coordinate manager and kernel maps.
Parameter names and layouts are MinkowskiEngine's own (the torch backend copies them).
"""

from __future__ import annotations

import collections
import collections.abc
import functools
import warnings
from typing import Any

import torch
from torch import nn

from medgen_cli.sparse import common
from medgen_cli.sparse.tensor import SparseTensor

_ABC_NAMES = ("Sequence", "Mapping", "MutableMapping", "Iterable", "Callable")


@functools.lru_cache(maxsize=1)
def import_minkowski() -> Any:
    """Import MinkowskiEngine 0.5.4, which still expects ``collections.Sequence`` & co.

    The aliases are added only here, right before the import, for Python >= 3.10.

    Raises:
        ImportError: MinkowskiEngine is not installed (or not built for this torch).
    """
    for name in _ABC_NAMES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import MinkowskiEngine as ME  # noqa: N817
    return ME


def _wrap(me: Any, batch_size: int) -> SparseTensor:
    return SparseTensor(me.C, me.F, int(me.tensor_stride[0]), batch_size, native=me)


def _to_me(x: SparseTensor, manager: Any = None) -> tuple[Any, torch.Tensor | None]:
    """The MinkowskiEngine tensor for ``x`` and the rows of ``x`` in its order (None: same)."""
    ME = import_minkowski()
    native = x.native
    if native is not None and (manager is None or native.coordinate_manager is manager):
        me = ME.SparseTensor(features=x.feats, coordinate_map_key=native.coordinate_map_key,
                             coordinate_manager=native.coordinate_manager)
        return me, None
    kwargs = {"coordinate_manager": manager} if manager is not None else {}
    me = ME.SparseTensor(features=x.feats, coordinates=x.coords.int(), tensor_stride=x.stride, **kwargs)
    return me, me.unique_index.long()


class _MEModule(nn.Module):
    """Runs one MinkowskiEngine module (``self.op``) on a :class:`SparseTensor`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._ctor = (args, kwargs)

    def __deepcopy__(self, memo: dict) -> _MEModule:
        # MinkowskiEngine's conv classes keep their settings in __slots__, which nn.Module's
        # pickling (and so copy.deepcopy, used by EMA's AveragedModel) drops: rebuild instead.
        args, kwargs = self._ctor
        new = type(self)(*args, **kwargs)
        new.load_state_dict(self.state_dict())
        tensors = list(self.parameters()) + list(self.buffers())
        if tensors:
            new.to(tensors[0].device)
        new.train(self.training)
        for p_new, p_old in zip(new.parameters(), self.parameters()):
            p_new.requires_grad_(p_old.requires_grad)
        memo[id(self)] = new
        return new

    def forward(self, x: SparseTensor) -> SparseTensor:
        me, _ = _to_me(x)
        return _wrap(self.op(me), x.batch_size)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # Parameters are stored without the ``op.`` level, exactly like the torch backend's.
        for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + "op.")]:
            state_dict[prefix + "op." + key[len(prefix):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):  # noqa: ANN001
        return self.op.state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)


class Conv(_MEModule):
    """``MinkowskiConvolution`` (stride 1: same coordinates; stride 2: coarser grid)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        ME = import_minkowski()
        self.op = ME.MinkowskiConvolution(in_channels, out_channels, kernel_size=kernel_size,
                                          stride=stride, bias=bias, dimension=3)


class GenerativeUp(_MEModule):
    """``MinkowskiGenerativeConvolutionTranspose`` (kernel 2, stride 2): voxel → 2³ children."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, bias)
        ME = import_minkowski()
        self.op = ME.MinkowskiGenerativeConvolutionTranspose(
            in_channels, out_channels, kernel_size=2, stride=2, bias=bias, dimension=3)


class Linear(_MEModule):
    """``MinkowskiLinear`` (1×1 conv)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, bias)
        self.op = import_minkowski().MinkowskiLinear(in_channels, out_channels, bias=bias)


class BatchNorm(_MEModule):
    """``MinkowskiBatchNorm``."""

    def __init__(self, channels: int, momentum: float = 0.1) -> None:
        super().__init__(channels, momentum)
        self.op = import_minkowski().MinkowskiBatchNorm(channels, momentum=momentum)


class MinkowskiBackend:
    """The sparse operations on MinkowskiEngine."""

    name = "minkowski"
    Conv = Conv
    GenerativeUp = GenerativeUp
    Linear = Linear
    BatchNorm = BatchNorm
    PixelNorm = common.PixelNorm
    Activation = common.Activation

    def __init__(self) -> None:
        import_minkowski()  # fail early; not stored, so modules holding a backend deep-copy

    @property
    def ME(self) -> Any:  # noqa: N802
        return import_minkowski()

    def prepare(self, x: SparseTensor) -> SparseTensor:
        """Attach a MinkowskiEngine tensor (rows may be reordered)."""
        if x.native is not None:
            return x
        me, _ = _to_me(x)
        return _wrap(me, x.batch_size)

    def prune(self, x: SparseTensor, mask: torch.Tensor) -> SparseTensor:
        """``MinkowskiPruning``: keep the voxels where ``mask`` is true."""
        me, rows = _to_me(x)
        if rows is not None:
            mask = mask[rows]
        return _wrap(self.ME.MinkowskiPruning()(me, mask.bool()), x.batch_size)

    def global_pool(self, x: SparseTensor, mode: str = "mean") -> torch.Tensor:
        """``MinkowskiGlobal{Avg,Sum,Max}Pooling`` → ``[batch_size, C]`` (empty items give 0)."""
        ops = {"mean": self.ME.MinkowskiGlobalAvgPooling, "sum": self.ME.MinkowskiGlobalSumPooling,
               "max": self.ME.MinkowskiGlobalMaxPooling}
        if mode not in ops:
            raise ValueError(f"unknown pooling mode {mode!r}")
        me, _ = _to_me(x)
        pooled = ops[mode]()(me)
        out = x.feats.new_zeros(x.batch_size, x.num_channels)
        return out.index_copy(0, pooled.C[:, 0].long(), pooled.F)

    def union(self, a: SparseTensor, b: SparseTensor) -> SparseTensor:
        """``MinkowskiUnion`` (both tensors are moved onto one coordinate manager)."""
        me_a, _ = _to_me(a)
        me_b, _ = _to_me(b, manager=me_a.coordinate_manager)
        return _wrap(self.ME.MinkowskiUnion()(me_a, me_b), max(a.batch_size, b.batch_size))

    def to_dense(self, x: SparseTensor, size: int) -> torch.Tensor:
        """``SparseTensor.dense`` on a ``size``³ grid from the origin → ``[B, C, G, G, G]``."""
        me, _ = _to_me(x)
        grid = size // x.stride
        shape = torch.Size([x.batch_size, x.num_channels, grid, grid, grid])
        dense, _, _ = me.dense(shape=shape, min_coordinate=torch.IntTensor([0, 0, 0]))
        return dense

    def from_dense(self, dense: torch.Tensor, threshold: float = 0.0, min_voxels: int = 0) -> SparseTensor:
        """Threshold as in :func:`common.from_dense`, then hand the voxels to MinkowskiEngine."""
        return self.prepare(common.from_dense(dense, threshold, min_voxels))
