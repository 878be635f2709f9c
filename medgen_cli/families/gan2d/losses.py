"""GAN losses and regularizers for the 2D families (logits in, scalar tensors out)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_hinge(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hinge loss of D (SAGAN): the real and fake terms, each a scalar."""
    return F.relu(1.0 - real).mean(), F.relu(1.0 + fake).mean()


def g_hinge(fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of G: ``-E[D(G(z))]``."""
    return -fake.mean()


def d_bce(real: torch.Tensor, fake: torch.Tensor, real_label: float = 0.9,
          fake_label: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary cross-entropy of D with one-sided label smoothing (real target 0.9)."""
    loss_real = F.binary_cross_entropy_with_logits(real, torch.full_like(real, real_label))
    loss_fake = F.binary_cross_entropy_with_logits(fake, torch.full_like(fake, fake_label))
    return loss_real, loss_fake


def g_bce(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating BCE loss of G (targets 1, never smoothed)."""
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def d_logistic(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2's logistic loss of D: ``softplus(-D(x))`` and ``softplus(D(G(z)))``."""
    return F.softplus(-real).mean(), F.softplus(fake).mean()


def g_logistic(fake: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's non-saturating logistic loss of G: ``softplus(-D(G(z)))``."""
    return F.softplus(-fake).mean()


def r1_penalty(d_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``E[‖∇_x D(x)‖²]`` over real images ``x`` (which must require grad); differentiable
    (``create_graph``) so D can be trained on it."""
    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    return grad.float().square().sum(dim=(1, 2, 3)).mean()


def path_lengths(images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobian norms ``‖J_wᵀ y‖`` with ``y ~ N(0, I)/sqrt(H·W)`` (StyleGAN2's path
    length). ``ws``: ``[B, num_ws, w_dim]``, the tensor the images were synthesized from."""
    noise = torch.randn_like(images) / (images.shape[2] * images.shape[3]) ** 0.5
    (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    return grad.float().square().sum(dim=2).mean(dim=1).sqrt()
