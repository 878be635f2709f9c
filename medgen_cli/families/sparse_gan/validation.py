"""Sparse-GAN validation by shape metrics, and an EMA whose decay warms up.

Validation generates a fixed sample (latents of fixed seeds, EMA weights) and compares it with a
fixed real subset (the first shapes of the validation split) by 1-NNA, COV and MMD with the
Chamfer distance (:mod:`medgen_cli.metrics.shapes`). Shapes are the occupied voxel coordinates
divided by the grid size (no per-shape normalisation: position and size are part of the shape),
subsampled to a fixed number of points. ``best.pt`` keeps the step whose 1-NNA is closest to 50%.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import torch

from medgen_cli.metrics.shapes import shape_metrics, subsample
from medgen_cli.sparse.tensor import SparseTensor

#: Validation metric names (the trainer prefixes ``val/``); the key metric is |1-NNA − 0.5|.
NNA, COV, MMD, NNA_GAP = "1nna", "cov", "mmd", "1nna_gap"


def sparse_to_points(x: SparseTensor, voxel_size: int, num_points: int, seed: int = 0) -> list[np.ndarray]:
    """Per batch item, its voxel coordinates / ``voxel_size`` as ``[N, 3]`` (≤ ``num_points``).

    An empty item becomes one point at the grid's corner: a shape is never undefined, and an
    empty sample is far from every real one (it counts against the generator).
    """
    coords = x.coords.detach().cpu()
    out = []
    for b in range(x.batch_size):
        pts = coords[coords[:, 0] == b, 1:].double().numpy() / voxel_size
        if len(pts) == 0:
            pts = np.zeros((1, 3))
        out.append(subsample(pts, num_points, seed + b))
    return out


class ShapeValidator:
    """Computes the shape metrics of a generator against a real subset chosen once.

    Args:
        num_samples: generated shapes and real shapes compared (each).
        num_points: points per shape (Chamfer cost grows with its square).
        voxel_size: the training grid edge.
        latents: ``latents(seed, n)`` → ``[n, latent_dim]`` (the seeded-latents rule of sampling).
    """

    def __init__(self, num_samples: int, num_points: int, voxel_size: int,
                 latents: Callable[[int, int], torch.Tensor]) -> None:
        self.num_samples, self.num_points, self.voxel_size = num_samples, num_points, voxel_size
        self.latents = latents
        self.real: list[np.ndarray] | None = None

    def real_shapes(self, batches: Iterable[dict[str, Any]]) -> list[np.ndarray]:
        """The first ``num_samples`` real shapes of the (unshuffled) validation batches; cached."""
        if self.real is None:
            shapes: list[np.ndarray] = []
            for batch in batches:
                x = SparseTensor(batch["coords"], batch["feats"], 1, int(batch["batch_size"]))
                shapes.extend(sparse_to_points(x, self.voxel_size, self.num_points, seed=len(shapes)))
                if len(shapes) >= self.num_samples:
                    break
            self.real = shapes[: self.num_samples]
        return self.real

    @torch.no_grad()
    def fake_shapes(self, gen: torch.nn.Module, device: torch.device, batch_size: int = 4) -> list[np.ndarray]:
        """The fixed sample: latents of seeds ``0 .. num_samples-1``."""
        z = self.latents(0, self.num_samples)
        shapes: list[np.ndarray] = []
        for s in range(0, len(z), batch_size):
            shapes.extend(sparse_to_points(gen(z[s:s + batch_size].to(device)), self.voxel_size,
                                           self.num_points, seed=s))
        return shapes

    def __call__(self, gen: torch.nn.Module, batches: Iterable[dict[str, Any]], device: torch.device) -> dict[str, float]:
        real = self.real_shapes(batches)
        if len(real) < 2:
            return {}  # 1-NNA needs two shapes per set
        m = shape_metrics(real, self.fake_shapes(gen, device))
        return {NNA: m["1nna_cd"], COV: m["cov_cd"], MMD: m["mmd_cd"], NNA_GAP: abs(m["1nna_cd"] - 0.5)}
