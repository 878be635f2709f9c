"""The volume cache: lazy (nothing loaded before the first item), bounded in memory, sharded per
DDP rank, shared with DataLoader workers, and value-preserving."""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen_cli.data.cache import cache_capacity, cache_shard, make_cache, process_shard
from medgen_cli.data.volumes import make_volume_dataset

S = 8  # 8^3 float32 volumes: 2 KiB each
ITEM_BYTES = 4 * S**3


def _files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = folder / f"v{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(rng.random((S, S, S), dtype=np.float32), np.eye(4)), str(path))
        out.append(path)
    return out


def _counting(ds, delay: float = 0.0) -> list[int]:
    """Make ``ds`` count (and optionally slow down) every load from its file."""
    calls: list[int] = []
    prepare = ds.prepare

    def slow(item):
        calls.append(1)
        time.sleep(delay)
        return prepare(item)

    ds.prepare = slow
    return calls


def test_first_item_does_not_wait_for_the_cache(tmp_path: Path) -> None:
    # 40 files at 25 ms each would be a 1 s pre-cache (MONAI's CacheDataset fills it in its
    # constructor); here the first item costs one load.
    ds = make_volume_dataset(_files(tmp_path, 40), (S, S, S), intensity="none", cache_rate=1.0)
    assert len(ds.cache) == 0 and ds.cache.nbytes == 40 * ITEM_BYTES
    calls = _counting(ds, delay=0.025)
    t0 = time.perf_counter()
    first = torch.utils.data.DataLoader(ds, batch_size=2)
    next(iter(first))
    assert time.perf_counter() - t0 < 0.5
    assert len(calls) == 2 and ds.cache.cached() == [0, 1]


def test_cached_items_are_the_files_values_and_not_loaded_twice(tmp_path: Path) -> None:
    files = _files(tmp_path, 4)
    ds = make_volume_dataset(files, (S, S, S), intensity="none", cache_rate=1.0)
    calls = _counting(ds)
    for _ in range(3):
        for i, f in enumerate(files):
            want = np.asarray(nib.load(str(f)).dataobj, dtype=np.float32)  # independent reader
            got = ds[i]["image"]
            assert got.shape == (1, S, S, S) and got.dtype == torch.float32
            np.testing.assert_array_equal(got[0].numpy(), want)
            got.zero_()  # a caller changing its copy does not change the cache
    assert len(calls) == 4


def test_cache_respects_its_memory_bound(tmp_path: Path) -> None:
    files = _files(tmp_path, 10)
    bound_gb = 3.5 * ITEM_BYTES / 2**30  # room for 3 items, not 4
    ds = make_volume_dataset(files, (S, S, S), intensity="none", cache_rate=1.0, cache_max_gb=bound_gb)
    for i in range(len(files)):
        ds[i]
    assert ds.cache.nbytes <= bound_gb * 2**30
    assert ds.cache.cached() == [0, 1, 2]
    calls = _counting(ds)
    for i in range(len(files)):
        ds[i]
    assert len(calls) == 7  # only the 3 cached items skip their file
    # cache_rate bounds it too, as MONAI's int(rate * n)
    half = make_volume_dataset(files, (S, S, S), intensity="none", cache_rate=0.25)
    assert len(half.cache.slots) == 2
    none = make_volume_dataset(files, (S, S, S), intensity="none", cache_rate=1.0, cache_max_gb=0.0)
    assert none.cache.nbytes == 0 and none[3]["image"].shape == (1, S, S, S)


def test_capacity_takes_the_smaller_of_rate_and_memory() -> None:
    assert cache_capacity(1000, 2**20, 0.25, 8 * 2**30) == 250
    assert cache_capacity(1000, 2**20, 1.0, 100 * 2**20) == 100
    assert cache_capacity(1000, 2**20, 1.0, 2**19) == 0
    assert cache_capacity(7, 1, 1.0, 1e12) == 7


def test_shards_are_disjoint_and_cover_the_set() -> None:
    for n, world in ((10, 2), (11, 3), (1, 4)):
        shards = [cache_shard(n, r, world) for r in range(world)]
        flat = sorted(i for s in shards for i in s)
        assert flat == list(range(n))
        assert all(len(s) in (n // world, n // world + 1) for s in shards)
    with pytest.raises(ValueError):
        cache_shard(10, 2, 2)


def test_a_ddp_rank_caches_only_its_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What torchrun sets for rank 1 of 2 processes on one machine.
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert process_shard() == (1, 2, 2)
    files = _files(tmp_path, 9)
    bound_gb = 3 * ITEM_BYTES / 2**30  # per machine: 1.5 items for each of the 2 processes
    ds = make_volume_dataset(files, (S, S, S), intensity="none", cache_rate=1.0, cache_max_gb=bound_gb)
    for i in range(len(files)):  # the global shuffle gives a rank items of every shard
        ds[i]
    assert ds.cache.cached() == [1]
    roomy = make_volume_dataset(files, (S, S, S), intensity="none", cache_rate=1.0)
    for i in reversed(range(len(files))):
        roomy[i]
    assert roomy.cache.cached() == [1, 3, 5, 7]
    cache0 = make_cache(9, (1, S, S, S), 1.0, 1.0, shard=(0, 2, 2))
    assert sorted(cache0.slots) == [0, 2, 4, 6, 8]


def test_items_a_worker_loads_are_cached_for_everyone(tmp_path: Path) -> None:
    ds = make_volume_dataset(_files(tmp_path, 6), (S, S, S), intensity="none", cache_rate=1.0)
    ctx = torch.multiprocessing.get_context("fork")
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1, multiprocessing_context=ctx)
    assert sum(len(b["image"]) for b in loader) == 6
    assert ds.cache.cached() == list(range(6))  # filled in the worker, seen in this process
    calls = _counting(ds)
    for i in range(6):
        ds[i]
    assert not calls
