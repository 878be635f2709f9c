"""The backend-neutral sparse tensor and coordinate hashing.

A :class:`SparseTensor` is a set of occupied voxels of a batch of 3D grids: integer coordinates
``[N, 4]`` (batch index, x, y, z), features ``[N, C]`` and a tensor stride ``s`` (coordinates are
multiples of ``s``; a stride-``s`` voxel covers ``s³`` voxels of the finest grid). This is
MinkowskiEngine's convention, so the two backends agree coordinate for coordinate.

Coordinate sets are hashed by *linearising* each row to one int64 key; a set is a sorted key
array, and membership / index lookup is ``torch.searchsorted`` — no Python hash table, and it
runs on any device.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

#: Bits per spatial axis in a linearised key; coordinates must lie in [-2^15, 2^15).
_AXIS_BITS = 16
_AXIS_OFFSET = 1 << (_AXIS_BITS - 1)
_AXIS_MAX = (1 << _AXIS_BITS) - 1
#: The batch index gets the remaining 15 bits (key < 2^63).
MAX_BATCH = (1 << 15) - 1


@dataclass
class SparseTensor:
    """Occupied voxels of a batch of 3D grids.

    Attributes:
        coords: ``[N, 4]`` integer tensor (batch, x, y, z), multiples of ``stride``.
        feats: ``[N, C]`` features.
        stride: tensor stride (the same on all three axes).
        batch_size: number of grids in the batch (items may be empty).
        native: a backend's own tensor for the same coordinates (MinkowskiEngine keeps its
            coordinate manager and kernel maps there); dropped when the coordinates change.
        cache: per-coordinate-set memo (the torch backend keeps kernel maps there).
    """

    coords: torch.Tensor
    feats: torch.Tensor
    stride: int = 1
    batch_size: int = 1
    native: Any = field(default=None, repr=False, compare=False)
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    @property
    def num_channels(self) -> int:
        return int(self.feats.shape[1])

    def with_feats(self, feats: torch.Tensor) -> SparseTensor:
        """Same coordinates (and cached maps), new features — for BN, activations, 1×1 convs."""
        if feats.shape[0] != self.coords.shape[0]:
            raise ValueError(f"{feats.shape[0]} feature rows for {self.coords.shape[0]} coordinates")
        return replace(self, feats=feats)

    def counts(self) -> torch.Tensor:
        """Voxels per batch item, ``[batch_size]`` int64."""
        return torch.bincount(self.coords[:, 0].long(), minlength=self.batch_size)

    def sorted(self) -> SparseTensor:
        """A copy with rows in key order (for comparing tensors whose row orders differ)."""
        order = torch.argsort(coord_keys(self.coords))
        return SparseTensor(self.coords[order], self.feats[order], self.stride, self.batch_size)


def coord_keys(coords: torch.Tensor) -> torch.Tensor:
    """Linearise ``[N, 4]`` (batch, x, y, z) coordinates to int64 keys that sort like the rows.

    Raises:
        ValueError: a coordinate outside [-2^15, 2^15) or a batch index above :data:`MAX_BATCH`.
    """
    c = coords.long()
    if c.numel():
        lo, hi = int(c[:, 1:].min()), int(c[:, 1:].max())
        if lo < -_AXIS_OFFSET or hi >= _AXIS_OFFSET or int(c[:, 0].max()) > MAX_BATCH or int(c[:, 0].min()) < 0:
            raise ValueError("sparse coordinates out of the hashable range")
    s = c[:, 1:] + _AXIS_OFFSET
    return (((c[:, 0] << _AXIS_BITS | s[:, 0]) << _AXIS_BITS | s[:, 1]) << _AXIS_BITS) | s[:, 2]


def query_keys(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys of query coordinates that may fall outside the range, plus a validity mask."""
    c = coords.long()
    s = c[:, 1:] + _AXIS_OFFSET
    valid = ((s >= 0) & (s <= _AXIS_MAX)).all(dim=1)
    s = s.clamp(0, _AXIS_MAX)
    keys = (((c[:, 0] << _AXIS_BITS | s[:, 0]) << _AXIS_BITS | s[:, 1]) << _AXIS_BITS) | s[:, 2]
    return keys, valid


class CoordIndex:
    """A sorted-key index of one coordinate set: ``lookup`` maps query rows to row numbers."""

    def __init__(self, coords: torch.Tensor) -> None:
        keys = coord_keys(coords)
        self.sorted_keys, self.perm = torch.sort(keys)

    def lookup(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row index of each query coordinate in the indexed set.

        Returns:
            ``(found [Q] bool, index [Q] int64)``; ``index`` is meaningless where not found.
        """
        keys, valid = query_keys(query)
        n = self.sorted_keys.numel()
        if n == 0:
            return torch.zeros_like(valid), torch.zeros_like(keys)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp_(max=n - 1)
        found = valid & (self.sorted_keys[pos] == keys)
        return found, self.perm[pos]


def decode_keys(keys: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`coord_keys`: ``[N]`` keys → ``[N, 4]`` int64 coordinates."""
    z = (keys & _AXIS_MAX) - _AXIS_OFFSET
    y = ((keys >> _AXIS_BITS) & _AXIS_MAX) - _AXIS_OFFSET
    x = ((keys >> (2 * _AXIS_BITS)) & _AXIS_MAX) - _AXIS_OFFSET
    b = keys >> (3 * _AXIS_BITS)
    return torch.stack([b, x, y, z], dim=1)


def unique_coords(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique rows (in key order) and, for each input row, the index of its unique row."""
    uniq, inverse = torch.unique(coord_keys(coords), sorted=True, return_inverse=True)
    return decode_keys(uniq), inverse


def kernel_offsets(kernel_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[K³, 3]`` kernel offsets in MinkowskiEngine's order (x varies fastest).

    Odd sizes are centred (``-(k-1)/2 .. (k-1)/2``); even sizes run ``0 .. k-1``, as in
    MinkowskiEngine's hyper-cube region. Multiply by the input tensor stride before use.
    """
    r = torch.arange(kernel_size, device=device)
    if kernel_size % 2 == 1:
        r = r - kernel_size // 2
    z, y, x = torch.meshgrid(r, r, r, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], dim=1)
