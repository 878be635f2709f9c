"""``medgen eval fid --nproc K``: feature extraction split over the ranks of a torch.distributed group.

Each rank takes a contiguous block of whole batches (images) or of volumes, so every batch is the
one a single process would run and the features are the same; rank 0 gathers the blocks in rank
order (the original file order) and computes the statistics from exactly the rows one process
would have. Progress is counted in the group's key-value store, so rank 0's bar shows the global
count. Without an initialised process group every helper is the single-process identity.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")


def group() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) without one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    return group()[0] == 0


def part(items: Sequence[T], unit: int = 1) -> list[T]:
    """This rank's contiguous block of ``items``, cut at multiples of ``unit`` (a batch)."""
    rank, world = group()
    units = -(-len(items) // max(1, unit))
    lo, hi = rank * units // world, (rank + 1) * units // world
    return list(items[lo * unit:hi * unit])


def gather(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0 (``None`` elsewhere); ``[obj]`` alone."""
    import torch.distributed as dist

    rank, world = group()
    if world == 1:
        return [obj]
    out: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    import torch.distributed as dist

    if group()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class GlobalCount:
    """A progress callback that counts over all ranks: every rank adds its done items to a key
    of the process group's store; rank 0 moves its bar to the sum. :meth:`wait` keeps rank 0's
    bar moving after its own block is done, until the other ranks finish theirs."""

    #: Counters made so far: every rank makes them in the same order, so the n-th is one key.
    made = 0

    def __init__(self, advance: Callable[[int], None] | None, total: int) -> None:
        import torch.distributed as dist

        self.advance, self.total, self.shown = advance, total, 0
        GlobalCount.made += 1
        self.key = f"medgen/fid/count{GlobalCount.made}"
        # The default group's store (the one torchrun's rendezvous made): a counter every rank can add to.
        self.store = dist.distributed_c10d._get_default_store() if group()[1] > 1 else None

    def __call__(self, n: int) -> None:
        if self.store is None:
            self._show(self.shown + n)
            return
        done = int(self.store.add(self.key, n))
        if is_main():
            self._show(done)

    def _show(self, done: int) -> None:
        if self.advance is not None and done > self.shown:
            self.advance(done - self.shown)
        self.shown = max(self.shown, done)

    def wait(self) -> None:
        """Rank 0: follow the other ranks' count until every item is done."""
        while self.store is not None and is_main() and self.shown < self.total:
            self._show(int(self.store.add(self.key, 0)))
            time.sleep(0.2)
