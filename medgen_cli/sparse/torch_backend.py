"""Pure-PyTorch sparse backend: sorted-key coordinate hashing and gather–matmul–scatter.

A convolution gathers, for every output voxel, its input neighbours at each kernel offset (an
im2col over the neighbour table; absent neighbours read a zero row), multiplies by the kernel
flattened to ``[K·in, out]`` in one GEMM, and its backward scatter-adds into the input rows. One
large GEMM beats one small GEMM per offset on CPU (the per-offset gather/cat/scatter traffic
dominated there).

Parameters have MinkowskiEngine's names and layouts (``kernel [K, in, out]`` with kernel
offsets in its order, ``bias [1, out]``, ``linear``/``bn`` sub-modules), so a state dict moves
between the two backends unchanged; the equivalence tests rely on that.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from medgen_cli.sparse import common
from medgen_cli.sparse.tensor import CoordIndex, SparseTensor, kernel_offsets, unique_coords


def _strided_coords(coords: torch.Tensor, stride: int) -> torch.Tensor:
    """Output coordinates of a stride-``stride`` conv: each voxel's cell corner, deduplicated."""
    c = coords.long().clone()
    c[:, 1:] = torch.div(c[:, 1:], stride, rounding_mode="floor") * stride
    return unique_coords(c)[0]


def _kernel_map(x: SparseTensor, kernel_size: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Output coordinates and the neighbour table ``[M, K]``: the input row of output ``m`` at
    kernel offset ``k`` (MinkowskiEngine's offset order), or ``N`` (a zero row) when that
    neighbour is absent. Memoised on ``x`` so layers on the same coordinates share it."""
    key = ("conv", kernel_size, stride)
    if key in x.cache:
        return x.cache[key]
    out_coords = x.coords.long() if stride == 1 else _strided_coords(x.coords, x.stride * stride)
    index = x.cache.get("index")
    if index is None:
        index = x.cache["index"] = CoordIndex(x.coords)
    offsets = kernel_offsets(kernel_size, x.coords.device) * x.stride
    query = out_coords[:, None, :].repeat(1, offsets.shape[0], 1)  # [M, K, 4]
    query[:, :, 1:] += offsets[None]
    found, rows = index.lookup(query.view(-1, 4))
    table = torch.where(found, rows, torch.full_like(rows, x.coords.shape[0])).view(-1, offsets.shape[0])
    x.cache[key] = (out_coords, table)
    return x.cache[key]


def _gather_matmul(feats: torch.Tensor, kernel: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Gather each output's K neighbours (zeros where absent) and do one matmul; autograd's
    backward of the gather is the scatter-add into the input rows."""
    padded = torch.cat([feats, feats.new_zeros(1, feats.shape[1])])
    cols = padded[table.view(-1)].view(table.shape[0], -1)
    return cols @ kernel.reshape(cols.shape[1], -1).to(cols.dtype)


class Conv(nn.Module):
    """Sparse convolution. ``stride=1``: output on the input's coordinates (same-coordinate
    conv); ``stride=2``: output on the coarser grid cells that hold an input voxel."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 bias: bool = False) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.in_channels, self.out_channels = in_channels, out_channels
        volume = kernel_size**3
        shape = (in_channels, out_channels) if volume == 1 else (volume, in_channels, out_channels)
        self.kernel = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(1, out_channels)) if bias else None
        bound = 1.0 / math.sqrt(in_channels * volume)
        nn.init.uniform_(self.kernel, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if self.kernel.dim() == 2 and self.stride == 1:
            feats = x.feats @ self.kernel
            return x.with_feats(feats if self.bias is None else feats + self.bias)
        out_coords, table = _kernel_map(x, self.kernel_size, self.stride)
        if torch.is_grad_enabled() and (x.feats.requires_grad or self.kernel.requires_grad):
            # Recompute the [M, K·in] gather in backward instead of keeping it: it is K times
            # the size of the input features, and it dominated a training step's peak memory.
            out = checkpoint(_gather_matmul, x.feats, self.kernel, table, use_reentrant=False)
        else:
            out = _gather_matmul(x.feats, self.kernel, table)
        if self.bias is not None:
            out = out + self.bias
        stride_out = x.stride * self.stride
        if self.stride == 1:
            return SparseTensor(out_coords, out, stride_out, x.batch_size, cache=x.cache)
        return SparseTensor(out_coords, out, stride_out, x.batch_size)


class GenerativeUp(nn.Module):
    """Generative transposed conv (kernel 2, stride 2): every voxel → its 2³ children at half
    the stride, child ``o`` getting ``feats @ kernel[o]``."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel = nn.Parameter(torch.empty(8, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(1, out_channels)) if bias else None
        bound = 1.0 / math.sqrt(out_channels * 8)  # MinkowskiEngine's transposed init
        nn.init.uniform_(self.kernel, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.stride < 2 or x.stride % 2:
            raise ValueError(f"cannot upsample a tensor of stride {x.stride}")
        child = x.stride // 2
        offsets = kernel_offsets(2, x.coords.device) * child
        coords = x.coords.long()[:, None, :].repeat(1, 8, 1)
        coords[:, :, 1:] += offsets[None]
        feats = torch.einsum("nc,kcd->nkd", x.feats, self.kernel).reshape(-1, self.out_channels)
        if self.bias is not None:
            feats = feats + self.bias
        return SparseTensor(coords.reshape(-1, 4), feats, child, x.batch_size)


class Linear(nn.Module):
    """1×1 convolution = a linear map of the features (MinkowskiLinear's layout)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels, bias=bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.with_feats(self.linear(x.feats))


class BatchNorm(nn.Module):
    """Batch norm over all voxels of the batch (MinkowskiBatchNorm's layout)."""

    def __init__(self, channels: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(channels, momentum=momentum)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.with_feats(self.bn(x.feats))


class TorchBackend:
    """Pure-PyTorch implementation of the sparse operations (any device)."""

    name = "torch"
    Conv = Conv
    GenerativeUp = GenerativeUp
    Linear = Linear
    BatchNorm = BatchNorm
    Activation = common.Activation

    def prepare(self, x: SparseTensor) -> SparseTensor:
        """Nothing to convert: the torch backend works on :class:`SparseTensor` directly."""
        return x

    def prune(self, x: SparseTensor, mask: torch.Tensor) -> SparseTensor:
        """Keep the voxels where ``mask`` is true."""
        keep = mask.nonzero().squeeze(1)
        return SparseTensor(x.coords[keep], x.feats[keep], x.stride, x.batch_size)

    def global_pool(self, x: SparseTensor, mode: str = "mean") -> torch.Tensor:
        """Pool the features of each batch item: ``[batch_size, C]`` (empty items give 0)."""
        return common.global_pool(x, mode)

    def union(self, a: SparseTensor, b: SparseTensor) -> SparseTensor:
        """Voxels of either tensor; features of shared voxels are added (missing = 0)."""
        if a.stride != b.stride:
            raise ValueError(f"union of tensors with strides {a.stride} and {b.stride}")
        coords, inverse = unique_coords(torch.cat([a.coords.long(), b.coords.long()]))
        feats = torch.cat([a.feats, b.feats.to(a.feats.dtype)])
        out = feats.new_zeros(coords.shape[0], feats.shape[1]).index_add(0, inverse, feats)
        return SparseTensor(coords, out, a.stride, max(a.batch_size, b.batch_size))

    def to_dense(self, x: SparseTensor, size: int) -> torch.Tensor:
        """``[B, C, G, G, G]`` with ``G = size // stride`` (``size``: finest-grid edge length)."""
        return common.to_dense(x, size)

    def from_dense(self, dense: torch.Tensor, threshold: float = 0.0, min_voxels: int = 0) -> SparseTensor:
        """Voxels of ``[B, C, D, H, W]`` above ``threshold`` (see :func:`common.from_dense`)."""
        return common.from_dense(dense, threshold, min_voxels)
