"""Class accuracy of generated volumes: a small 3D CNN trained on the real volumes judges whether
each class-conditional sample looks like its class (a reader's "do I recognise it?", measured).

The classifier sees every volume scaled to [0, 1] by its own min..max, so a sample is judged by its
shape, not by an intensity offset; training uses random flips and 90° rotations because the data's
classes do not depend on orientation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


def _prepare(volumes: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.stack([np.asarray(v, dtype=np.float32) for v in volumes]))
    lo = x.flatten(1).min(1).values.view(-1, *[1] * (x.ndim - 1))
    hi = x.flatten(1).max(1).values.view(-1, *[1] * (x.ndim - 1))
    return ((x - lo) / (hi - lo).clamp_min(1e-6))[:, None]


def _network(num_classes: int, dims: int) -> nn.Module:
    conv, pool = (nn.Conv3d, nn.MaxPool3d) if dims == 3 else (nn.Conv2d, nn.MaxPool2d)
    layers: list[nn.Module] = []
    c_in = 1
    for c in (8, 16, 32):
        layers += [conv(c_in, c, 3, padding=1), nn.GroupNorm(4, c), nn.ReLU(), pool(2)]
        c_in = c
    return nn.Sequential(*layers[:-1], nn.AdaptiveAvgPool3d(1) if dims == 3 else nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(c_in, num_classes))


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    dims = list(range(2, x.ndim))
    for d in dims:
        if bool(torch.rand((), generator=gen) < 0.5):
            x = torch.flip(x, [d])
    k = int(torch.randint(0, 4, (), generator=gen))
    a, b = [dims[i] for i in torch.randperm(len(dims), generator=gen)[:2].tolist()]
    return torch.rot90(x, k, dims=(a, b))


def train_classifier(volumes: Sequence[np.ndarray] | np.ndarray, labels: Sequence[int], steps: int = 300,
                     batch_size: int = 16, seed: int = 0) -> nn.Module:
    """A small CNN fitted to ``volumes`` (``[N, *spatial]``, 2D or 3D) and their class ``labels``."""
    x, y = _prepare(volumes), torch.as_tensor(np.asarray(labels), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = _network(int(y.max()) + 1, x.ndim - 2)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=gen)
        loss = nn.functional.cross_entropy(net(_augment(x[idx], gen)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def predict(net: nn.Module, volumes: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """The predicted class of each volume."""
    return net(_prepare(volumes)).argmax(1).numpy()


def class_accuracy(net: nn.Module, volumes: Sequence[np.ndarray] | np.ndarray, labels: Sequence[int]) -> float:
    """Fraction of ``volumes`` the classifier assigns to their ``labels``."""
    return float(np.mean(predict(net, volumes) == np.asarray(labels)))
