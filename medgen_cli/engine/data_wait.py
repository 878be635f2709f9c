"""How much of the training time waits for data: ``stats/data_wait`` in the logs.

The share is ``fetch / (fetch + step)`` summed over the steps since the last logged one: *fetch*
is the time the trainer blocks on the data loader for a batch (including starting the epoch's
loader and its workers), *step* the time from the batch's arrival to the end of ``train_step``.
Validation, images and checkpoints are not counted. 0 means the data always waited for the
model; a share above a few per cent means more ``trainer.num_workers`` (or a larger cache) would
make training faster.
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

#: The name it is logged under (not ``train/``: a timing, which a resumed run cannot reproduce).
DATA_WAIT = "stats/data_wait"


class DataWaitMeter:
    """Times the fetches of a batch iterator and the steps between them."""

    def __init__(self) -> None:
        self.fetch = 0.0
        self.busy = 0.0
        self._arrived: float | None = None

    def timed(self, batches: Iterable[T]) -> Iterator[T]:
        """``batches``, timing how long each one takes to arrive."""
        it = iter(batches)
        while True:
            start = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self._arrived = time.perf_counter()
            self.fetch += self._arrived - start
            yield batch

    def step_done(self) -> None:
        """Mark the end of the step on the newest batch."""
        if self._arrived is not None:
            self.busy += time.perf_counter() - self._arrived
            self._arrived = None

    def share(self) -> float:
        """The data-wait share in [0, 1] since the last :meth:`reset`."""
        total = self.fetch + self.busy
        return min(max(self.fetch / total, 0.0), 1.0) if total > 0 else 0.0

    def reset(self) -> None:
        """Start a new window (after the share was logged)."""
        self.fetch = self.busy = 0.0
