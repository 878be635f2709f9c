"""The dense side of the sparse GAN: rendering a generated structure on a grid, a Conv3d critic
that sees every voxel (existing or not), and the plain Conv3d generator of the dense baseline.

Why a dense critic: a sparse critic only sees the voxels that exist, so a gradient penalty (or
R1) bounds its slope with respect to voxel *values*, while real and generated shapes differ in
*structure* — which voxels exist. Such a critic runs away (D(real) 10³–10⁴) and its gradient
cannot tell the generator where a voxel is missing. On a dense grid (cheap at 32³/64³: one
float per voxel) every voxel is an input, present or absent, so the penalty acts on all of
them and the critic's gradient exists at the empty voxels as well.

Why the straight-through render: the sparse generator decides at each level which children to
keep (hard threshold and budget). :func:`render_dense` scatters the kept output on the grid
(exactly what sampling writes) and adds, for every candidate the generator created at every
level — kept or dropped — ``p − p.detach()`` (exactly 0 forward) spread over the voxels it
covers at full resolution. Backward, each candidate's occupancy probability receives the mean
gradient of the voxels it covers: the critic can ask for a voxel the generator dropped, or for
a whole coarse region it never refined, and the pruning decision learns from it.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from medgen_cli.sparse.common import from_dense, to_dense
from medgen_cli.sparse.tensor import SparseTensor


def render_dense(x: SparseTensor, candidates: list[SparseTensor], size: int, detach_output: bool = False) -> torch.Tensor:
    """``[B, 1, size, size, size]``: the generated voxels on the grid plus the straight-through
    terms of every level's candidates (see the module docstring).

    Args:
        x: the generator's output (stride 1, one feature per kept voxel).
        candidates: per level, every created child with its occupancy probability as the one
            feature (strides ``size / level grid``).
        size: the grid edge.
        detach_output: take no gradient through ``x``'s own features (occupancy output, whose
            features already carry the last level's straight-through term).
    """
    feats = x.feats.detach() if detach_output else x.feats
    out = to_dense(x.with_feats(feats), size)
    for cand in candidates:
        p = cand.feats[:, :1]
        st = to_dense(cand.with_feats(p - p.detach()), size)  # [B, 1, g, g, g], g = size / stride
        f = cand.stride
        # Nearest upsampling, divided by the f³ voxels it covers: each probability gets the mean
        # gradient of its voxels, so coarse levels do not dominate the shared features.
        out = out + st.repeat_interleave(f, 2).repeat_interleave(f, 3).repeat_interleave(f, 4) / f**3
    return out


class MinibatchStd(nn.Module):
    """StyleGAN's minibatch standard deviation: one extra channel with the mean per-feature
    std over groups of ``group`` samples, so the critic can see a batch that lacks variety."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        g = min(self.group, b)
        while b % g:
            g -= 1
        y = x.reshape(g, b // g, *x.shape[1:])
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=list(range(1, y.dim() - 1)), keepdim=True)
        std = std.repeat(g, 1, *x.shape[2:])  # [b, 1, D, H, W]
        return torch.cat([x, std], dim=1)


class DenseCritic(nn.Module):
    """``[B, 1, S, S, S]`` → ``[B]``: one stride-2 Conv3d + LeakyReLU per channel entry, an
    optional minibatch-std channel, a 3×3×3 conv and a linear head over the last grid.

    No normalisation layers: R1 and the gradient penalty are per-sample gradients, which batch
    statistics would mix.
    """

    def __init__(self, channels: list[int], size: int, kernel_size: int = 3, mbstd_group: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_prev = 1
        for c in channels:
            layers += [nn.Conv3d(c_prev, c, kernel_size, stride=2, padding=(kernel_size - 1) // 2), nn.LeakyReLU(0.2)]
            c_prev = c
        self.convs = nn.Sequential(*layers)
        self.mbstd = MinibatchStd(mbstd_group) if mbstd_group > 0 else None
        self.final = nn.Conv3d(c_prev + (1 if self.mbstd else 0), c_prev, 3, padding=1)
        g = size // 2 ** len(channels)
        self.head = nn.Linear(c_prev * g**3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)
        if self.mbstd is not None:
            h = self.mbstd(h)
        h = F.leaky_relu(self.final(h), 0.2)
        return self.head(h.flatten(1)).squeeze(1)


class DenseGenerator(nn.Module):
    """The dense baseline (the classic 3D-GAN): z → linear → ``init³`` grid → per channel step a
    stride-2 ConvTranspose3d + BN + LeakyReLU → Conv3d → sigmoid occupancy on the full grid.

    ``forward(z, dense=True)`` is the training output (probabilities, differentiable); ``forward(z)``
    returns the voxels above 0.5 as a :class:`SparseTensor` like the sparse generator's (value 1 in
    occupancy mode, else the probability), so validation and sampling share one path.
    """

    def __init__(self, latent_dim: int, init_size: int, channels: list[int], voxel_size: int,
                 output: str = "occupancy") -> None:
        super().__init__()
        self.latent_dim, self.init_size, self.voxel_size, self.output = latent_dim, init_size, voxel_size, output
        self.c0 = channels[0]
        self.fc = nn.Linear(latent_dim, init_size**3 * channels[0])
        layers: list[nn.Module] = []
        for a, b in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose3d(a, b, 4, stride=2, padding=1, bias=False), nn.BatchNorm3d(b), nn.LeakyReLU(0.2)]
        self.blocks = nn.Sequential(*layers)
        self.out = nn.Conv3d(channels[-1], 1, 3, padding=1)

    def render(self, z: torch.Tensor) -> torch.Tensor:
        s = self.init_size
        x = F.leaky_relu(self.fc(z), 0.2).view(z.shape[0], self.c0, s, s, s)
        return torch.sigmoid(self.out(self.blocks(x)))

    def forward(self, z: torch.Tensor, dense: bool = False) -> SparseTensor | torch.Tensor:
        """The voxels above 0.5, or with ``dense`` the probabilities on the grid."""
        p = self.render(z)
        if dense:
            return p
        x = from_dense(p, 0.5)
        return x.with_feats(torch.ones_like(x.feats)) if self.output == "occupancy" else x
