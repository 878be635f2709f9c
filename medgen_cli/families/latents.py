"""Seeded starting noise and interpolation paths, shared by every family that samples.

The one seed rule of every family: sample ``i`` of a request with seed ``s`` starts from the noise
(latent) of seed ``s + i``, drawn on the CPU with its own generator (:func:`seeded_normal`), so a
sample depends only on its own seed — not on the device, the batch size or how many samples were
asked for. (A sampler that draws noise at every step, DDPM, seeds that per batch.)
"""

from __future__ import annotations

from typing import Iterable

import torch


def seeded_normal(shape: tuple[int, ...], seeds: Iterable[int]) -> torch.Tensor:
    """``[len(seeds), *shape]`` standard normals on the CPU, row ``i`` from ``seeds[i]`` alone."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation ``(1 - t)·a + t·b``."""
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two tensors taken as single vectors (computed in float64;
    falls back to lerp when they are (anti)parallel). Gaussian noise lives near a sphere, so every
    point of the path keeps a typical norm."""
    fa, fb = a.flatten().double(), b.flatten().double()
    cos = torch.dot(fa / fa.norm(), fb / fb.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    s = torch.sin(omega)
    if float(s.abs()) < 1e-6:
        return lerp(a, b, t)
    mixed = (torch.sin((1 - t) * omega) / s) * fa + (torch.sin(t * omega) / s) * fb
    return mixed.reshape(a.shape).to(a.dtype)


def interpolation_path(a: torch.Tensor, b: torch.Tensor, steps: int, method: str) -> torch.Tensor:
    """``[steps, *a.shape]``: ``method`` (slerp | lerp) from ``a`` to ``b``, both endpoints included."""
    mix = slerp if method == "slerp" else lerp
    return torch.stack([mix(a, b, i / (steps - 1)) for i in range(steps)])
