"""Autoencoder reconstruction of volumes larger than the training size, in overlapping tiles.

MAISI decodes 512³ CT in patches; here the whole encode → decode runs per tile through MONAI's
``SlidingWindowInferer`` (Gaussian blending of overlapping windows), so memory follows the tile,
not the volume: activations of one tile at a time, plus the input and the blended output (and
its weight map) at full size, which stay in host memory.

How close the tiled reconstruction is to the whole-volume one depends on the network. A network
of convolutions alone (``model.norm: none``, no attention: the CPU preset) is local: a tile's
output equals the whole volume's wherever the voxel is farther than the receptive field from a
tile border that lies inside the volume, and the Gaussian weights give the voxels near a tile
border little weight. GroupNorm normalises each tile by its own statistics and attention sees
only its tile, so such networks differ between tile and whole volume everywhere (see the tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from medgen_cli.errors import MedgenError

if TYPE_CHECKING:
    import torch


def downsampling(levels: int) -> int:
    """How many voxels of the input one latent voxel covers per axis (MONAI AutoencoderKL halves
    the grid between consecutive levels)."""
    return 2 ** (levels - 1)


def check_tile(tile: Sequence[int], spatial_dims: int, factor: int) -> tuple[int, ...]:
    """``tile`` as one entry per axis, each a positive multiple of ``factor``.

    Raises:
        ValueError: the wrong number of entries, or an entry the network cannot take whole.
    """
    full = tuple(tile) * spatial_dims if len(tile) == 1 else tuple(tile)
    if len(full) != spatial_dims:
        raise ValueError(f"--tile needs 1 or {spatial_dims} entries, got {len(tile)}")
    bad = [t for t in full if t <= 0 or t % factor]
    if bad:
        raise ValueError(f"--tile {','.join(map(str, full))}: every entry must be a positive multiple of {factor} "
                         f"(the autoencoder's downsampling)")
    return full


def reconstruct(ae: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Deterministic reconstruction (decode the posterior mean)."""
    z_mu, _ = ae.encode(x)
    return ae.decode(z_mu).float()


def _padded_whole(ae: torch.nn.Module, x: torch.Tensor, factor: int) -> torch.Tensor:
    """Whole-volume reconstruction, zero-padded up to a multiple of ``factor`` and cropped back
    (the padding is the one the sliding window uses for a volume smaller than its tile)."""
    import torch.nn.functional as F

    spatial = x.shape[2:]
    pad = [(-s) % factor for s in spatial]
    if not any(pad):
        return reconstruct(ae, x)
    flat = [p for axis in reversed(pad) for p in (0, axis)]  # F.pad: last axis first
    out = reconstruct(ae, F.pad(x, flat))
    return out[(..., *[slice(0, s) for s in spatial])]


def reconstruct_tiled(ae: torch.nn.Module, x: torch.Tensor, tile: Sequence[int], overlap: float = 0.25,
                      factor: int = 1, device: torch.device | None = None) -> torch.Tensor:
    """Reconstruction of ``x`` ``[N, 1, *spatial]`` tile by tile when it is larger than ``tile``.

    A volume no larger than ``tile`` along every axis is reconstructed whole (padded to a multiple
    of ``factor``). A larger one goes through MONAI's ``SlidingWindowInferer`` (windows of
    ``tile`` overlapping by ``overlap``, Gaussian-weighted blending); the network runs on
    ``device`` (default: ``x``'s), the blended output is kept on the CPU.

    Raises:
        MedgenError: a tile the network cannot take (not a multiple of ``factor``).
    """
    from monai.inferers import SlidingWindowInferer

    try:
        roi = check_tile(tile, x.ndim - 2, factor)
    except ValueError as exc:
        raise MedgenError(str(exc)) from None
    run_on = device if device is not None else x.device
    if all(s <= t for s, t in zip(x.shape[2:], roi)):
        return _padded_whole(ae, x.to(run_on), factor).cpu()
    inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=1, overlap=overlap, mode="gaussian",
                                   padding_mode="constant", cval=0.0, sw_device=run_on, device="cpu",
                                   progress=False)
    return inferer(x.cpu(), lambda window: reconstruct(ae, window))
