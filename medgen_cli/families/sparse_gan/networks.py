"""Generator and discriminator of the sparse GAN, on either sparse backend.

Generator: z → linear → dense ``init_size³`` grid → per level: generative ×2 upsampling (every
voxel → its 2³ children) → BN/act → same-coordinate conv → BN/act → occupancy head. Children whose
occupancy probability is above the threshold are kept, at most a per-level budget per sample,
and the kept features are multiplied by their probability (soft gating), so the keep/drop choice
receives gradient through the features the discriminator sees. Memory is bounded by the budget,
not by the volume: the largest level ever holds ``8 × slack × max_voxels / 4`` children.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from medgen_cli.families.sparse_gan.dense import render_dense
from medgen_cli.sparse import get_backend
from medgen_cli.sparse.tensor import SparseTensor


def level_budgets(init_size: int, levels: int, max_voxels: int, slack: float,
                  scaling: str = "surface") -> list[int]:
    """Voxels kept per sample after each upsampling level (the last one is ``max_voxels``).

    A coarser level keeps ``slack · max_voxels / r^levels_below`` with ``r`` = 4 (``surface``: a
    surface crosses a quarter as many cells per halving of the resolution) or 8 (``volume``: a
    solid's cells). Point clouds are surfaces: with ``volume`` a 32³ shell of ~1,800 voxels meets
    a budget of 128 cells at 8³ where it occupies ~175, and every cell cut there is a 4³ hole."""
    ratio = {"surface": 4, "volume": 8}[scaling]
    out = []
    for level in range(1, levels + 1):
        full = (init_size * 2**level) ** 3
        below = levels - level
        cap = max_voxels if below == 0 else math.ceil(slack * max_voxels / ratio**below)
        out.append(max(1, min(full, cap)))
    return out


def select_children(prob: torch.Tensor, batch: torch.Tensor, batch_size: int, budget: int,
                    threshold: float) -> torch.Tensor:
    """Mask of the voxels to keep: per sample, those with ``prob > threshold``, at most ``budget``
    of them (highest first), and always the single most likely one so no sample goes empty."""
    n = prob.shape[0]
    # One sort orders by sample, then by decreasing probability (prob lies in (0, 1)).
    order = torch.argsort(batch.double() * 2.0 - prob.detach().double())
    counts = torch.bincount(batch, minlength=batch_size)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n, device=prob.device) - starts[batch[order]]
    keep_sorted = (rank < budget) & ((prob.detach()[order] > threshold) | (rank == 0))
    keep = torch.zeros(n, dtype=torch.bool, device=prob.device)
    keep[order] = keep_sorted
    return keep


class _UpBlock(nn.Module):
    def __init__(self, sp: Any, c_in: int, c_out: int, norm: str = "batch") -> None:
        super().__init__()
        norm_cls = {"batch": sp.BatchNorm, "pixel": sp.PixelNorm}[norm]
        self.up = sp.GenerativeUp(c_in, c_out)
        self.bn1, self.act1 = norm_cls(c_out), sp.Activation("leaky_relu", 0.2)
        self.conv = sp.Conv(c_out, c_out, kernel_size=3)
        self.bn2, self.act2 = norm_cls(c_out), sp.Activation("leaky_relu", 0.2)
        self.occupancy = sp.Linear(c_out, 1)

    def forward(self, x: SparseTensor) -> tuple[SparseTensor, torch.Tensor]:
        x = self.act1(self.bn1(self.up(x)))
        x = self.act2(self.bn2(self.conv(x)))
        return x, torch.sigmoid(self.occupancy(x).feats[:, 0])


class SparseGenerator(nn.Module):
    """z ``[B, latent]`` → sparse volume (stride 1, one feature in [0, 1] per kept voxel)."""

    def __init__(self, latent_dim: int, init_size: int, channels: list[int], voxel_size: int,
                 max_voxels: int, occupancy_threshold: float = 0.5, parent_slack: float = 2.0,
                 backend: str = "torch", output: str = "value", norm: str = "batch",
                 budget_scaling: str = "surface") -> None:
        super().__init__()
        self.output = output
        self.sp = get_backend(backend)
        self.latent_dim, self.init_size, self.voxel_size = latent_dim, init_size, voxel_size
        self.threshold = occupancy_threshold
        self.fc = nn.Linear(latent_dim, init_size**3 * channels[0])
        self.blocks = nn.ModuleList(_UpBlock(self.sp, a, b, norm) for a, b in zip(channels[:-1], channels[1:]))
        self.out = self.sp.Linear(channels[-1], 1)
        self.budgets = level_budgets(init_size, len(self.blocks), max_voxels, parent_slack, budget_scaling)
        g = torch.arange(init_size)
        grid = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), dim=-1).reshape(-1, 3)
        self.register_buffer("grid", grid * (voxel_size // init_size), persistent=False)
        #: Voxel counts of the last forward (children created / kept per level), for tests and logs.
        self.last_stats: dict[str, list[int]] = {}

    def forward(self, z: torch.Tensor, dense: bool = False) -> SparseTensor | torch.Tensor:
        """The sparse output, or with ``dense`` its straight-through render on the grid
        (:meth:`render`; an argument of ``forward`` so a DDP-wrapped generator renders too)."""
        return self.render(z) if dense else self.generate(z)

    def generate(self, z: torch.Tensor) -> SparseTensor:
        """z ``[B, latent]`` → the kept voxels (stride 1, one feature each)."""
        b = z.shape[0]
        c0 = self.fc.out_features // self.init_size**3
        feats = nn.functional.leaky_relu(self.fc(z), 0.2).view(b, c0, -1).transpose(1, 2).reshape(-1, c0)
        batch = torch.arange(b, device=z.device).repeat_interleave(self.grid.shape[0])
        coords = torch.cat([batch[:, None], self.grid.repeat(b, 1)], dim=1)
        x = self.sp.prepare(SparseTensor(coords, feats, self.voxel_size // self.init_size, b))
        created, kept = [], []
        #: Every created child of each level with its occupancy probability (for render()).
        self.last_candidates: list[SparseTensor] = []
        prob = None
        for block, budget in zip(self.blocks, self.budgets):
            x, prob = block(x)
            keep = select_children(prob, x.coords[:, 0].long(), b, budget, self.threshold)
            created.append(x.num_voxels)
            self.last_candidates.append(SparseTensor(x.coords, prob[:, None], x.stride, b))
            # prob rides along as a last column: a backend may reorder rows when pruning.
            x = self.sp.prune(x.with_feats(torch.cat([x.feats * prob[:, None], prob[:, None]], 1)), keep)
            prob = x.feats[:, -1]
            x = x.with_feats(x.feats[:, :-1])
            kept.append(x.num_voxels)
        self.last_stats = {"created": created, "kept": kept}
        if self.output == "occupancy":
            # Exactly 1 forward (binary data carry 1 too); backward the occupancy's gradient, so a
            # critic that wants a voxel gone lowers its probability below the threshold.
            return x.with_feats(((prob - prob.detach()) + 1.0)[:, None])  # (p - p) first: exactly 0
        value = torch.sigmoid(self.out(x).feats) * prob[:, None]
        return x.with_feats(value)

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, 1, S, S, S]``: the output on the dense grid, with straight-through gradients to
        every level's keep/drop decision (:func:`~medgen_cli.families.sparse_gan.dense.render_dense`)."""
        x = self.generate(z)
        x = x.with_feats(x.feats.float())
        cands = [c.with_feats(c.feats.float()) for c in self.last_candidates]
        return render_dense(x, cands, self.voxel_size, detach_output=self.output == "occupancy")


class SparseDiscriminator(nn.Module):
    """Sparse volume (one feature per voxel) → one score per sample ``[B]``."""

    def __init__(self, channels: list[int], kernel_size: int = 3, pooling: str = "mean",
                 backend: str = "torch") -> None:
        super().__init__()
        self.sp = get_backend(backend)
        self.pooling = pooling
        layers: list[nn.Module] = []
        c_prev = 1
        for c in channels:
            layers += [self.sp.Conv(c_prev, c, kernel_size=kernel_size, stride=2, bias=True),
                       self.sp.Activation("leaky_relu", 0.2)]
            c_prev = c
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(c_prev, 1)

    def forward(self, x: SparseTensor) -> torch.Tensor:
        h = self.convs(self.sp.prepare(x))
        return self.head(self.sp.global_pool(h, self.pooling)).squeeze(1)
