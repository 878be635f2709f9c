"""Sampling and latent interpolation for the sparse GAN: dense volumes on the data's grid.

Latents follow the one rule of :mod:`medgen_cli.families.latents`: sample ``i`` from seed
``seed + i`` alone (no sequential draw from one generator).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medgen_cli.contract.samples import Samples, frame_samples, seeded_samples
from medgen_cli.families.latents import interpolation_path, seeded_normal
from medgen_cli.families.sparse_gan.options import SparseGANInterpolateOptions, SparseGANSampleOptions

if TYPE_CHECKING:
    from medgen_cli.contract.context import InferenceContext
    from medgen_cli.contract.family import Family
    from medgen_cli.families.sparse_gan.config import SparseGANConfig


def latents(seed: int, n: int, dim: int) -> torch.Tensor:
    """``[n, dim]`` latents, row ``i`` from seed ``seed + i`` alone."""
    return seeded_normal((dim,), range(seed, seed + n))


@torch.no_grad()
def generate_volumes(family: Any, gen: torch.nn.Module, z: torch.Tensor, device: Any,
                     batch_size: int = 4, track: Any = None) -> np.ndarray:
    """Dense ``[N, voxel_size³]`` float32 volumes from latents ``z`` (``[N, latent_dim]``)."""
    from medgen_cli.sparse.common import to_dense

    size = family.cfg.data.voxel_size
    starts: Any = range(0, z.shape[0], batch_size)
    if track is not None:
        starts = track(iter(starts), len(starts), "sampling")
    out = []
    for start in starts:
        x = gen(z[start:start + batch_size].to(device))
        dense = to_dense(x.with_feats(x.feats.float()), size)[:, 0]
        out.extend(v.cpu().numpy().astype(np.float32) for v in dense)
    return np.stack(out)


def sample(family: Family[SparseGANConfig], opts: SparseGANSampleOptions, ctx: InferenceContext) -> Samples:
    """``opts.num`` volumes with the data's affine; sample ``i`` from seed ``opts.seed + i``."""
    z = latents(opts.seed, opts.num, family.cfg.generator.latent_dim)
    vols = generate_volumes(family, ctx.eval_module("generator"), z, ctx.device, opts.batch_size, ctx.track)
    return seeded_samples(vols[:, None], opts.seed, affine=np.asarray(family.affine, dtype=np.float64))


def interpolate(family: Family[SparseGANConfig], opts: SparseGANInterpolateOptions, ctx: InferenceContext) -> Samples:
    """Frames along slerp/lerp between the latents of ``seed_a`` and ``seed_b``."""
    za, zb = latents(opts.seed_a, 1, family.cfg.generator.latent_dim)[0], \
        latents(opts.seed_b, 1, family.cfg.generator.latent_dim)[0]
    z = interpolation_path(za, zb, opts.frames, opts.method)
    vols = generate_volumes(family, ctx.eval_module("generator"), z, ctx.device)
    return frame_samples(vols[:, None], affine=np.asarray(family.affine, dtype=np.float64))
