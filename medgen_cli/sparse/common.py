"""Backend-neutral pieces: feature-wise activations, pooling and dense ↔ sparse conversion."""

from __future__ import annotations

import torch
from torch import nn

from medgen_cli.sparse.tensor import SparseTensor

_ACTIVATIONS = {
    "relu": lambda slope: nn.ReLU(),
    "leaky_relu": lambda slope: nn.LeakyReLU(slope),
    "elu": lambda slope: nn.ELU(),
    "tanh": lambda slope: nn.Tanh(),
    "sigmoid": lambda slope: nn.Sigmoid(),
    "identity": lambda slope: nn.Identity(),
}


class Activation(nn.Module):
    """An element-wise activation applied to the features (coordinates unchanged)."""

    def __init__(self, kind: str = "relu", negative_slope: float = 0.2) -> None:
        super().__init__()
        if kind not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {kind!r}; choose from {sorted(_ACTIVATIONS)}")
        self.fn = _ACTIVATIONS[kind](negative_slope)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.with_feats(self.fn(x.feats))


class PixelNorm(nn.Module):
    """Each voxel's feature vector scaled to unit root-mean-square (ProGAN's generator norm).

    Per voxel, so the same in training and evaluation and independent of how many voxels the batch
    holds, where a batch norm's running statistics drift with the number of kept voxels."""

    def __init__(self, channels: int = 0, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: SparseTensor) -> SparseTensor:
        f = x.feats
        return x.with_feats(f * torch.rsqrt(f.pow(2).mean(dim=1, keepdim=True) + self.eps))


def global_pool(x: SparseTensor, mode: str = "mean") -> torch.Tensor:
    """Pool the features of each batch item to ``[batch_size, C]``; empty items give zeros.

    Args:
        x: the sparse tensor.
        mode: ``mean``, ``sum`` or ``max``.
    """
    batch = x.coords[:, 0].long()
    out = x.feats.new_zeros(x.batch_size, x.num_channels)
    if mode == "max":
        idx = batch[:, None].expand_as(x.feats)
        out = out.fill_(float("-inf")).scatter_reduce(0, idx, x.feats, reduce="amax", include_self=True)
        return torch.where(torch.isinf(out), torch.zeros_like(out), out)
    out = out.index_add(0, batch, x.feats)
    if mode == "sum":
        return out
    if mode != "mean":
        raise ValueError(f"unknown pooling mode {mode!r}")
    counts = torch.bincount(batch, minlength=x.batch_size).clamp_(min=1).to(out.dtype)
    return out / counts[:, None]


def to_dense(x: SparseTensor, size: int) -> torch.Tensor:
    """Scatter into a dense ``[B, C, G, G, G]`` tensor, ``G = size // x.stride``; absent voxels
    are 0. Differentiable w.r.t. the features."""
    grid = size // x.stride
    c = x.coords.long()
    ijk = torch.div(c[:, 1:], x.stride, rounding_mode="floor")
    if c.numel() and (int(ijk.min()) < 0 or int(ijk.max()) >= grid):
        raise ValueError(f"coordinates outside a {size}³ grid")
    flat = ((c[:, 0] * grid + ijk[:, 0]) * grid + ijk[:, 1]) * grid + ijk[:, 2]
    out = x.feats.new_zeros(x.batch_size * grid**3, x.num_channels).index_copy(0, flat, x.feats)
    return out.view(x.batch_size, grid, grid, grid, x.num_channels).permute(0, 4, 1, 2, 3).contiguous()


def from_dense(dense: torch.Tensor, threshold: float = 0.0, min_voxels: int = 0) -> SparseTensor:
    """Voxels of a dense ``[B, C, D, H, W]`` batch whose first channel exceeds ``threshold``.

    An item with fewer than ``min_voxels`` such voxels keeps its ``min_voxels`` highest-valued
    voxels instead, so a faint volume never becomes empty. Features are all ``C`` channels.
    """
    if dense.dim() != 5:
        raise ValueError(f"expected [B, C, D, H, W], got {tuple(dense.shape)}")
    b, _, d, h, w = dense.shape
    score = dense[:, 0].reshape(b, -1)
    keep = score > threshold
    if min_voxels > 0:
        short = keep.sum(dim=1) < min_voxels
        if bool(short.any()):
            k = min(min_voxels, score.shape[1])
            top = torch.topk(score[short], k, dim=1).indices
            fill = torch.zeros_like(keep[short]).scatter_(1, top, True)
            keep[short] = fill
    bi, flat = keep.nonzero(as_tuple=True)
    i = torch.div(flat, h * w, rounding_mode="floor")
    j = torch.div(flat, w, rounding_mode="floor") % h
    k = flat % w
    coords = torch.stack([bi, i, j, k], dim=1)
    feats = dense.permute(0, 2, 3, 4, 1)[bi, i, j, k]
    return SparseTensor(coords, feats, 1, b)
