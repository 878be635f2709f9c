"""Checking every input file before a run folder exists, on a few threads.

The checks read files (gzip inflation, PNG chunk CRCs, image decoding); zlib and Pillow release
the GIL while they work, so threads overlap them with each other and with disk reads.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def check_each(check: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """``[check(item) for item in items]`` on up to ``workers`` threads (default: the CPUs, at
    most 8). The first failing item *in order* raises, so the same bad file is named every time."""
    items = list(items)
    n = workers if workers is not None else min(8, os.cpu_count() or 1)
    if n <= 1 or len(items) < 2:
        return [check(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=n)
    try:
        return list(pool.map(check, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a bad file, the rest are not started
