"""The pure-PyTorch sparse backend against dense references (torch's Conv3d, index arithmetic)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medgen_cli.sparse import get_backend
from medgen_cli.sparse.tensor import SparseTensor, coord_keys, decode_keys, kernel_offsets

sp = get_backend("torch")


def _random_dense(b: int = 2, c: int = 3, n: int = 8, occupancy: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, 1, n, n, n, generator=g) < occupancy
    vals = torch.randn(b, c, n, n, n, generator=g, dtype=torch.float64)
    vals[:, :1] = vals[:, :1].abs() + 0.1  # channel 0 positive so threshold 0 keeps the mask
    return vals * mask


def _dense_weight(conv: torch.nn.Module, k: int) -> torch.Tensor:
    """Conv3d weight [out, in, k, k, k] from a sparse kernel [k³, in, out] (x varies fastest)."""
    w = conv.kernel.detach().view(k, k, k, conv.in_channels, conv.out_channels)  # [z, y, x, in, out]
    return w.permute(4, 3, 2, 1, 0).contiguous()  # [out, in, x, y, z]


def test_keys_round_trip_and_sort_like_rows() -> None:
    coords = torch.tensor([[0, -3, 5, 7], [1, 0, 0, 0], [0, -3, 5, 8], [2, 100, -200, 31]])
    keys = coord_keys(coords)
    assert torch.equal(decode_keys(keys), coords)
    order = sorted(range(4), key=lambda i: tuple(coords[i].tolist()))
    assert torch.argsort(keys).tolist() == order


def test_kernel_offsets_order() -> None:
    off = kernel_offsets(3)
    assert off.shape == (27, 3)
    assert off[0].tolist() == [-1, -1, -1] and off[1].tolist() == [0, -1, -1] and off[3].tolist() == [-1, 0, -1]
    assert kernel_offsets(2).min() == 0 and kernel_offsets(2).max() == 1


def test_dense_sparse_round_trip() -> None:
    dense = _random_dense()
    x = sp.from_dense(dense, threshold=0.0)
    assert x.num_voxels == int((dense[:, 0] > 0).sum())
    assert torch.equal(sp.to_dense(x, 8), dense)


def test_min_voxels_floor_keeps_top_values() -> None:
    dense = torch.zeros(2, 1, 4, 4, 4)
    dense[0, 0, 1, 2, 3] = 0.05
    dense[0, 0, 0, 0, 1] = 0.04
    dense[1] = torch.rand(1, 4, 4, 4) + 0.5
    x = sp.from_dense(dense, threshold=0.1, min_voxels=2)
    counts = x.counts().tolist()
    assert counts == [2, 64]
    first = x.coords[x.coords[:, 0] == 0, 1:].tolist()
    assert sorted(first) == [[0, 0, 1], [1, 2, 3]]


@pytest.mark.parametrize("occupancy", [1.0, 0.3])
def test_same_coordinate_conv_matches_masked_conv3d(occupancy: float) -> None:
    dense = _random_dense(occupancy=occupancy)
    x = sp.from_dense(dense, threshold=0.0)
    conv = sp.Conv(3, 4, kernel_size=3, stride=1, bias=True).double()
    y = conv(x)
    assert torch.equal(y.coords, x.coords)
    ref = F.conv3d(dense, _dense_weight(conv, 3), conv.bias.detach().view(-1), padding=1)
    ref = ref * (dense[:, :1] != 0)
    torch.testing.assert_close(sp.to_dense(y, 8), ref)


@pytest.mark.parametrize("k", [2, 3])
def test_strided_conv_matches_conv3d(k: int) -> None:
    dense = _random_dense(occupancy=0.2, seed=1)
    x = sp.from_dense(dense, threshold=0.0)
    conv = sp.Conv(3, 5, kernel_size=k, stride=2).double()
    y = conv(x)
    assert y.stride == 2
    # Output cells: the 2³ blocks holding at least one input voxel.
    occupied = F.max_pool3d((dense[:, :1] != 0).double(), 2) > 0
    assert y.num_voxels == int(occupied.sum())
    pad = 1 if k == 3 else 0
    ref = F.conv3d(dense, _dense_weight(conv, k), stride=2, padding=pad) * occupied
    torch.testing.assert_close(sp.to_dense(y, 8), ref)


def test_generative_up_children_and_values() -> None:
    coords = torch.tensor([[0, 0, 0, 0], [0, 4, 0, 4], [1, 0, 4, 0]])
    x = SparseTensor(coords, torch.randn(3, 2), stride=4, batch_size=2)
    up = sp.GenerativeUp(2, 3)
    y = up(x)
    assert y.stride == 2 and y.num_voxels == 24
    for row in range(y.num_voxels):
        c = y.coords[row]
        parent = c.clone()
        parent[1:] = (c[1:] // 4) * 4
        p = (coords == parent).all(dim=1).nonzero().item()
        o = ((c[1:] - parent[1:]) // 2).tolist()
        kidx = o[0] + 2 * o[1] + 4 * o[2]
        torch.testing.assert_close(y.feats[row], x.feats[p] @ up.kernel[kidx].detach())


def test_prune_pool_union() -> None:
    dense = _random_dense(occupancy=0.4)
    x = sp.from_dense(dense, threshold=0.0)
    mask = x.feats[:, 1] > 0
    p = sp.prune(x, mask)
    assert p.num_voxels == int(mask.sum())
    mean = sp.global_pool(x, "mean")
    for b in range(2):
        torch.testing.assert_close(mean[b], x.feats[x.coords[:, 0] == b].mean(0))
    torch.testing.assert_close(sp.global_pool(x, "max")[1], x.feats[x.coords[:, 0] == 1].max(0).values)
    other = sp.from_dense(_random_dense(occupancy=0.4, seed=3), threshold=0.0)
    u = sp.union(x, other)
    torch.testing.assert_close(sp.to_dense(u, 8), sp.to_dense(x, 8) + sp.to_dense(other, 8))


def test_gradients_flow_to_features_and_kernel() -> None:
    dense = _random_dense(occupancy=0.3)
    x = sp.from_dense(dense, threshold=0.0)
    feats = x.feats.clone().requires_grad_(True)
    conv = sp.Conv(3, 2, kernel_size=3, stride=2).double()
    out = sp.global_pool(conv(x.with_feats(feats)), "sum").sum()
    out.backward()
    dense_in = dense.clone().requires_grad_(True)
    occupied = F.max_pool3d((dense[:, :1] != 0).double(), 2) > 0
    ref = (F.conv3d(dense_in, _dense_weight(conv, 3), stride=2, padding=1) * occupied).sum()
    ref.backward()
    g_ref = dense_in.grad.permute(0, 2, 3, 4, 1)[tuple(x.coords.T)]
    torch.testing.assert_close(feats.grad, g_ref)
