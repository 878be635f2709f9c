"""Adversarial losses of the sparse GAN and the gradient penalty over the union of coordinates."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from medgen_cli.sparse.tensor import SparseTensor
from medgen_cli.sparse.torch_backend import TorchBackend


def d_loss(kind: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator loss (without the penalty) for ``wgan-gp``, ``vanilla``, ``lsgan`` or ``hinge``, as its
    real and fake terms (their sum is the loss), so each term's share can be logged."""
    if kind == "wgan-gp":
        return -d_real.mean(), d_fake.mean()
    if kind == "vanilla":
        return (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)),
                F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
    if kind == "lsgan":
        return 0.5 * (d_real - 1).pow(2).mean(), 0.5 * d_fake.pow(2).mean()
    if kind == "hinge":
        return F.relu(1 - d_real).mean(), F.relu(1 + d_fake).mean()
    raise ValueError(f"unknown gan_type {kind!r}")


def g_loss(kind: str, d_fake: torch.Tensor) -> torch.Tensor:
    """Generator loss for ``wgan-gp``, ``vanilla`` (non-saturating), ``lsgan`` or ``hinge``."""
    if kind in ("wgan-gp", "hinge"):
        return -d_fake.mean()
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    if kind == "lsgan":
        return 0.5 * (d_fake - 1).pow(2).mean()
    raise ValueError(f"unknown gan_type {kind!r}")


def interpolate_union(real: SparseTensor, fake: SparseTensor, alpha: torch.Tensor) -> SparseTensor:
    """``alpha_b · real + (1 − alpha_b) · fake`` per sample, on the union of their voxels (a voxel
    missing from one of them counts as 0 there). Features are detached."""
    rb = real.coords[:, 0].long()
    fb = fake.coords[:, 0].long()
    a = SparseTensor(real.coords.long(), real.feats.detach() * alpha[rb, None], 1, real.batch_size)
    b = SparseTensor(fake.coords.long(), fake.feats.detach() * (1 - alpha[fb, None]), 1, fake.batch_size)
    return TorchBackend().union(a, b)


def gradient_penalty(critic: Callable[[SparseTensor], torch.Tensor], real: SparseTensor,
                     fake: SparseTensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty ``E[(‖∇ D(x̂)‖ − 1)²]`` with x̂ interpolated over the union of coordinates.

    The gradient is taken w.r.t. the interpolate's features; the norm is per sample.
    ``critic`` must be twice differentiable (the torch backend is; MinkowskiEngine's
    convolutions are not, see :class:`~medgen_cli.families.sparse_gan.family.SparseGANFamily`).
    """
    bsz = real.batch_size
    alpha = torch.rand(bsz, device=real.feats.device, generator=generator, dtype=real.feats.dtype)
    x = interpolate_union(real, fake, alpha)
    feats = x.feats.requires_grad_(True)
    scores = critic(x.with_feats(feats))
    (grad,) = torch.autograd.grad(scores.sum(), feats, create_graph=True)
    sq = grad.new_zeros(bsz).index_add(0, x.coords[:, 0].long(), grad.pow(2).sum(dim=1))
    return ((sq + 1e-12).sqrt() - 1).pow(2).mean()


def dense_gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                           fake: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty on dense grids: ``x̂ = α·real + (1 − α)·fake`` per sample, the gradient
    taken w.r.t. every voxel of ``x̂`` (present in either volume or in neither)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, 1, device=real.device, generator=generator, dtype=real.dtype)
    x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    norm = (grad.pow(2).flatten(1).sum(dim=1) + 1e-12).sqrt()
    return (norm - 1).pow(2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """R1 (Mescheder et al. 2018): ``E‖∇ₓ D(x)‖²`` over real dense volumes, every voxel an input.

    Returns:
        ``(penalty, scores)``: the critic's scores on ``real`` come from the same forward, so the
        caller's real term need not run the critic again.
    """
    x = real.detach().requires_grad_(True)
    scores = critic(x)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean(), scores
