"""Pure-PyTorch sparse backend: sorted-key coordinate hashing and per-offset gather–GEMM–scatter.

A convolution's kernel map lists, for each kernel offset, the (input row, output row) pairs it
connects — found with one indexing op into a dense grid over the bounding box (a sorted-key
binary search when the box is too large). The convolution then loops over the offsets like
MinkowskiEngine: gather the connected input rows, one GEMM with that offset's ``[in, out]``
slice, add into the output rows; its backward mirrors that into one gradient buffer. Absent
neighbours (most of a sparse neighbourhood) cost nothing and the per-offset buffers stay small and
cache-resident; an earlier single-GEMM im2col over all ``K`` offsets spent most of its time
allocating and filling its ``[M, K·in]`` buffer (it measured 2-3× MinkowskiEngine's time; this
one 0.5-0.7×, ``benchmarks/bench_sparse_conv.py``, one thread, loaded machine).

Parameters have MinkowskiEngine's names and layouts (``kernel [K, in, out]`` with kernel
offsets in its order, ``bias [1, out]``, ``linear``/``bn`` sub-modules), so a state dict moves
between the two backends unchanged; the equivalence tests rely on that.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from medgen_cli.sparse import common
from medgen_cli.sparse.tensor import CoordIndex, SparseTensor, kernel_offsets, unique_coords


def _strided_coords(coords: torch.Tensor, stride: int) -> torch.Tensor:
    """Output coordinates of a stride-``stride`` conv: each voxel's cell corner, deduplicated."""
    c = coords.long().clone()
    c[:, 1:] = torch.div(c[:, 1:], stride, rounding_mode="floor") * stride
    return unique_coords(c)[0]


#: Largest dense lookup grid (cells) for kernel maps; beyond it the sorted-key index is used.
DENSE_LOOKUP_CELLS = 1 << 25


def _dense_lookup(x: SparseTensor, out_coords: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor | None:
    """Neighbour table through a dense grid over the bounding box (``-1`` = absent), or ``None``
    when the box is too large. A query's grid cell is the output's cell plus a constant per
    offset, so the whole table is one add and one indexing op (no per-query binary search)."""
    c = x.coords.long()
    if c.shape[0] == 0:
        return None
    s = x.stride
    pad = int(offsets.abs().max()) // s + 1   # strided outputs lie up to one cell below the inputs
    lo = c[:, 1:].amin(0) - pad * s
    shape = torch.div(c[:, 1:].amax(0) + pad * s - lo, s, rounding_mode="floor") + 1
    batch = int(c[:, 0].max()) + 1
    if batch * int(shape.prod()) > DENSE_LOOKUP_CELLS:
        return None
    steps = torch.stack([shape[1] * shape[2], shape[2], torch.ones_like(shape[2])])

    def flat(q: torch.Tensor) -> torch.Tensor:
        ijk = torch.div(q[:, 1:] - lo, s, rounding_mode="floor")
        return q[:, 0] * int(shape.prod()) + ijk @ steps

    grid = torch.full((batch * int(shape.prod()),), -1, dtype=torch.long, device=c.device)
    grid[flat(c)] = torch.arange(c.shape[0], device=c.device)
    return grid[flat(out_coords)[:, None] + torch.div(offsets, s, rounding_mode="floor") @ steps]


def _kernel_map(x: SparseTensor, kernel_size: int, stride: int) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Output coordinates and, per kernel offset (MinkowskiEngine's order), the pairs
    ``(input rows, output rows)`` it connects — only neighbours that exist, so absent ones cost
    nothing. Memoised on ``x`` so layers on the same coordinates share it."""
    key = ("conv", kernel_size, stride)
    if key in x.cache:
        return x.cache[key]
    out_coords = x.coords.long() if stride == 1 else _strided_coords(x.coords, x.stride * stride)
    offsets = kernel_offsets(kernel_size, x.coords.device) * x.stride
    table = _dense_lookup(x, out_coords, offsets)
    if table is None:
        index = x.cache.get("index")
        if index is None:
            index = x.cache["index"] = CoordIndex(x.coords)
        query = out_coords[:, None, :].repeat(1, offsets.shape[0], 1)  # [M, K, 4]
        query[:, :, 1:] += offsets[None]
        found, rows = index.lookup(query.view(-1, 4))
        table = torch.where(found, rows, torch.full_like(rows, -1)).view(-1, offsets.shape[0])
    pairs = []
    for col in table.t():
        out_rows = (col >= 0).nonzero().squeeze(1)
        pairs.append((col[out_rows], out_rows))
    x.cache[key] = (out_coords, pairs)
    return x.cache[key]


def _is_identity(pair: tuple[torch.Tensor, torch.Tensor], n_in: int, n_out: int) -> bool:
    rows_in, rows_out = pair
    return rows_in.numel() == n_in == n_out and torch.equal(rows_in, rows_out)


class _SparseConv(torch.autograd.Function):
    """Per offset: gather the input rows it connects, one GEMM, add into the output rows.

    The per-offset buffers are small and reused (cache-resident), unlike a full ``[M, K·C]``
    im2col, whose allocation and memory traffic dominated on a loaded CPU; absent neighbours
    (most of a sparse neighbourhood) cost nothing. The backward mirrors it into one input-gradient
    buffer (autograd's own backward of ``index_select`` would allocate and sum a full ``[N, C]``
    tensor per offset). It is written with differentiable ops, so a double backward (the WGAN-GP
    penalty, ``create_graph=True``) works through it.
    """

    @staticmethod
    def forward(ctx: Any, feats: torch.Tensor, kernel: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor]],
                num_out: int) -> torch.Tensor:
        ctx.save_for_backward(feats, kernel)
        ctx.pairs = pairs
        out = feats.new_zeros(num_out, kernel.shape[-1])
        for k, pair in enumerate(pairs):
            if pair[0].numel() == 0:
                continue
            if _is_identity(pair, feats.shape[0], num_out):
                out.add_(feats @ kernel[k])  # the centre of a same-coordinate conv: no indexing
            else:
                out.index_add_(0, pair[1], feats.index_select(0, pair[0]) @ kernel[k])
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        feats, kernel = ctx.saved_tensors
        grad = grad.contiguous()
        g_feats = grad.new_zeros(feats.shape) if ctx.needs_input_grad[0] else None
        k_grads = []
        for k, (rows_in, rows_out) in enumerate(ctx.pairs):
            if rows_in.numel() == 0:
                k_grads.append(kernel.new_zeros(kernel.shape[1:]))
                continue
            identity = _is_identity((rows_in, rows_out), feats.shape[0], grad.shape[0])
            g = grad if identity else grad.index_select(0, rows_out)
            if g_feats is not None:
                part = g @ kernel[k].t()
                if torch.is_grad_enabled():  # create_graph: out of place, so autograd can trace it
                    g_feats = g_feats + part if identity else g_feats.index_add(0, rows_in, part)
                elif identity:
                    g_feats.add_(part)
                else:
                    g_feats.index_add_(0, rows_in, part)
            if ctx.needs_input_grad[1]:
                x = feats if identity else feats.index_select(0, rows_in)
                k_grads.append(x.t() @ g)
        g_kernel = torch.stack(k_grads) if ctx.needs_input_grad[1] else None
        return g_feats, g_kernel, None, None


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
        out_coords, pairs = _kernel_map(x, self.kernel_size, self.stride)
        kernel = self.kernel.to(x.feats.dtype)
        if kernel.dim() == 2:  # 1³ kernel with a stride: one offset
            kernel = kernel[None]
        out = _SparseConv.apply(x.feats, kernel, pairs, out_coords.shape[0])
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
    PixelNorm = common.PixelNorm
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
