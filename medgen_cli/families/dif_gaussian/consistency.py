"""Blending the two estimates a dif-gaussian model makes, by how well each explains the data.

The model predicts every volume twice: the point decoder (view features + Gaussians: a learned,
global prior of the training anatomy) and the refined FDK (FDK + a local 3D UNet, trained densely
on every voxel). On anatomy like the training data the decoder is far better; on anatomy it has not
seen, it paints what it learned and the local branch is better (measured on MNI pseudo-CT: decoder
38.6 vs local 33.2 dB on held-out variants of the training anatomy, 26.7 vs 27.1 dB on held-out
anatomy). The measured projections tell the two situations apart without any label: the weight
``w`` of ``w·decoder + (1 - w)·local`` that best reproduces them (least squares over the
re-projections of both volumes, a closed form because projection is linear) is ~0.9 on familiar
anatomy and ~0.35 on unfamiliar anatomy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from medgen_cli.data.cbct.geometry import CBCTGeometry

#: Every 2nd detector pixel, 4 samples per voxel of the grid's side along each ray (~2 per voxel
#: crossed): ~1-2% from diffct's exact path lengths, ~10 ms per 10-view 32³ case.
STRIDE, SAMPLES_PER_VOXEL = 2, 4


def decoder_weight(decoder: torch.Tensor, local: torch.Tensor, projections: torch.Tensor, angles: torch.Tensor,
                   geometry: CBCTGeometry) -> float:
    """``argmin_w ‖A(w·decoder + (1 - w)·local) - p‖²`` clipped to [0, 1].

    Args:
        decoder, local: ``(z, y, x)`` volumes in the case's normalised attenuation (any grid size:
            they are sampled at normalised coordinates).
        projections: the measured raw projections ``(V, U, W)`` (line integrals, mm) at ``angles``.
        angles: ``(V,)`` radians.
        geometry: the run's geometry.
    """
    import torch

    points, step, pixels = geometry.ray_samples(angles.cpu(), STRIDE, SAMPLES_PER_VOXEL * geometry.volume_size)
    a, b = geometry.ray_sums(torch.stack([decoder, local]), points, step).unbind(0)
    measured = projections[:, pixels][:, :, pixels].reshape(a.shape).to(a)
    diff = (a - b).flatten().double()
    denom = float(diff @ diff)
    if denom <= 1e-12:  # the two estimates re-project alike: either will do
        return 1.0
    return min(max(float(diff @ (measured - b).flatten().double()) / denom, 0.0), 1.0)
