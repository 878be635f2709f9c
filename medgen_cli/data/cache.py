"""A bounded, lazily filled, rank-sharded in-memory cache of prepared volumes.

MONAI's ``CacheDataset`` fills its cache before the first item can be read: 250 of 1,000 volumes
(``cache_rate`` 0.25) are loaded and resized while training waits, every DDP rank caches the same
first files, and the cache's size follows the file count, not the machine. Here instead:

* **lazy** — an item is prepared (MONAI transforms up to the first random one) the first time it
  is read and stored then; nothing is loaded before the first step.
* **bounded** — the cache holds at most ``cache_rate`` of the items *and* at most
  ``cache_max_gb`` per machine (split between the DDP processes on it); its block of memory is
  sized once, and pages become resident only as items are stored.
* **sharded** — under DDP, rank ``r`` of ``W`` may cache only indices ``i`` with ``i % W == r``
  (:func:`cache_shard`), so the processes of a job hold one copy of the cached data between them,
  not ``W``. Reads of other ranks' items are prepared from the file (the sampler still reshuffles
  over the whole set each epoch, so DDP stays equal to one process with the whole batch).
* **shared with workers** — the block is an anonymous shared mapping made before DataLoader
  workers fork, so an item a worker stores is seen by the trainer and by the next epoch's workers.
  (With the ``spawn`` start method, workers get no cache and read the files.)

Caching changes no value: a cached item is the prepared tensor the transforms would give again.
"""

from __future__ import annotations

import math
import mmap
import os
from typing import Any, Callable, Sequence

import numpy as np

from medgen_cli.errors import MedgenError

#: The default of ``data.cache_max_gb``: cached volumes per machine, GiB.
DEFAULT_CACHE_MAX_GB = 2.0


def process_shard() -> tuple[int, int, int]:
    """(rank, world size, processes on this machine) of this process: from ``torch.distributed``
    when a group is initialised, else torchrun's environment, else (0, 1, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return rank, world, max(1, min(local, world))


def cache_shard(n_items: int, rank: int = 0, world: int = 1) -> list[int]:
    """The indices rank ``rank`` of ``world`` may cache: every ``world``-th, from ``rank`` (the
    shards of all ranks are disjoint and cover ``range(n_items)``)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    return list(range(rank, n_items, world))


def cache_capacity(shard_size: int, item_bytes: int, cache_rate: float, max_bytes: float) -> int:
    """How many items of a shard are cached: ``int(cache_rate * shard_size)`` (as MONAI's
    ``CacheDataset``), and no more than fit in ``max_bytes``."""
    if not 0.0 <= cache_rate <= 1.0:
        raise MedgenError(f"cache_rate must be in [0, 1], not {cache_rate}")
    if max_bytes < 0:
        raise MedgenError(f"cache_max_gb must be >= 0, not {max_bytes / 2**30:g}")
    by_rate = int(shard_size * cache_rate)
    by_memory = int(max_bytes // max(item_bytes, 1))
    return max(0, min(by_rate, by_memory, shard_size))


class VolumeCache:
    """Up to ``capacity`` float32 arrays of one ``shape`` in an anonymous shared mapping, one slot
    per cacheable index, each with a ready flag (set after its data is written).

    Args:
        indices: the dataset indices this process may cache, in order of preference; the first
            ``capacity`` of them get a slot.
        shape: the shape of every cached array.
        capacity: the number of slots.
    """

    def __init__(self, indices: Sequence[int], shape: Sequence[int], capacity: int) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.item_bytes = 4 * math.prod(self.shape)
        self.slots = {int(i): k for k, i in enumerate(list(indices)[:capacity])}
        self._data: np.ndarray | None = None
        self._ready: np.ndarray | None = None
        if self.slots:
            n = len(self.slots)
            self._buf = mmap.mmap(-1, n * self.item_bytes)  # MAP_SHARED | MAP_ANONYMOUS: seen by forked workers
            self._flags = mmap.mmap(-1, n)
            self._data = np.frombuffer(self._buf, dtype=np.float32).reshape(n, *self.shape)
            self._ready = np.frombuffer(self._flags, dtype=np.uint8)

    @property
    def nbytes(self) -> int:
        """The size of the block (the most memory the cache can hold)."""
        return len(self.slots) * self.item_bytes

    def __len__(self) -> int:
        """How many items are stored now."""
        return 0 if self._ready is None else int(self._ready.sum())

    def cached(self) -> list[int]:
        """The dataset indices stored now."""
        if self._ready is None:
            return []
        return sorted(i for i, k in self.slots.items() if self._ready[k])

    def get(self, index: int) -> np.ndarray | None:
        """A copy of the stored array of ``index`` (``None``: not stored)."""
        k = self.slots.get(index)
        if k is None or self._ready is None or not self._ready[k]:
            return None
        return self._data[k].copy()  # type: ignore[index]  # callers may change it in place

    def put(self, index: int, value: Any) -> bool:
        """Store ``value`` for ``index`` when it has a slot and the cache's shape; whether it did."""
        k = self.slots.get(index)
        if k is None or self._ready is None or self._ready[k]:
            return False
        arr = np.asarray(value, dtype=np.float32)
        if arr.shape != self.shape:
            return False
        self._data[k] = arr  # type: ignore[index]
        self._ready[k] = 1  # after the data: a reader in another process never sees half an item
        return True

    def __getstate__(self) -> dict[str, Any]:
        # A spawned worker cannot share an anonymous mapping: it gets an empty cache.
        return {"shape": self.shape, "item_bytes": self.item_bytes, "slots": {}, "_data": None, "_ready": None}


def make_cache(n_items: int, shape: Sequence[int], cache_rate: float, cache_max_gb: float,
               shard: tuple[int, int, int] | None = None) -> VolumeCache:
    """The cache of one dataset of ``n_items`` items of ``shape`` for this process.

    Args:
        n_items: the dataset's length.
        shape: the shape of a prepared item (``[1, *size]``).
        cache_rate: the fraction of this rank's shard that is cached.
        cache_max_gb: GiB of cached items per machine, split evenly between its processes.
        shard: (rank, world size, processes on this machine); default :func:`process_shard`.
    """
    rank, world, local = shard or process_shard()
    indices = cache_shard(n_items, rank, world)
    item_bytes = 4 * math.prod(int(s) for s in shape)
    capacity = cache_capacity(len(indices), item_bytes, cache_rate, cache_max_gb * 2**30 / local)
    return VolumeCache(indices, shape, capacity)


def cached_load(cache: VolumeCache, index: int, load: Callable[[], Any]) -> Any:
    """The prepared item ``index``: from ``cache`` when stored, else ``load()`` (stored when it
    has a slot). ``load`` returns a tensor or array of the cache's shape (others are not stored)."""
    hit = cache.get(index)
    if hit is not None:
        import torch

        return torch.from_numpy(hit)
    value = load()
    cache.put(index, value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    return value
