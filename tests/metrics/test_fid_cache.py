"""The FID statistics cache stays under its cap (``$MEDGEN_FID_CACHE_MB``), least recently used first.

Entries are tiny fake arrays made here; sizes are compared with the cap in bytes, so a cap of a few
KiB exercises the same code a 1 GiB cache does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from medgen_cli.errors import MedgenError
from medgen_cli.metrics.fid import inputs as fi

KIB = 1 << 10
ENV = "MEDGEN_FID_CACHE_MB"  # the documented name


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDGEN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(ENV, raising=False)
    return tmp_path / "fid"


def _arrays(kib: int) -> dict[str, np.ndarray]:
    """About ``kib`` KiB once stored (uncompressed float64)."""
    return {"mu": np.zeros(8), "sigma": np.ones(kib * KIB // 8 - 8)}


def _store_aged(key: str, kib: int, age_s: int) -> Path:
    """An entry stored ``age_s`` seconds ago."""
    fi.cache_store(key, _arrays(kib))
    p = fi.cache_dir() / f"{key}.npz"
    t = p.stat().st_mtime - age_s
    os.utime(p, (t, t))
    return p


def _total(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.npz"))


def test_seven_evaluations_stay_under_the_cap_oldest_removed_first(cache: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV, str(100 / 1024))  # 100 KiB
    for i in range(7):  # 7 x ~30 KiB: 210 KiB uncapped
        _store_aged(f"k{i}", 30, age_s=100 - i)
    names = sorted(p.stem for p in cache.glob("*.npz"))
    assert names == ["k4", "k5", "k6"]  # the three newest fit in 100 KiB, the four oldest went
    assert _total(cache) <= 100 * KIB


def test_a_cache_hit_makes_an_entry_recent(cache: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV, str(100 / 1024))
    _store_aged("old", 30, age_s=300)
    _store_aged("mid", 30, age_s=200)
    _store_aged("new", 30, age_s=100)
    assert fi.cache_load("old", need_features=False) is not None  # used again: now the most recent
    fi.cache_store("next", _arrays(30))
    assert sorted(p.stem for p in cache.glob("*.npz")) == ["new", "next", "old"]  # "mid" was least recently used


def test_default_cap_and_zero_disables(cache: Path, monkeypatch) -> None:
    assert fi.cache_limit_bytes() == 1024 << 20  # the documented default, 1 GiB
    monkeypatch.setenv(ENV, "0")
    fi.cache_store("k", _arrays(4))
    assert not list(cache.glob("*.npz"))


def test_an_entry_larger_than_the_cap_is_not_kept(cache: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV, str(10 / 1024))
    _store_aged("small", 4, age_s=10)
    fi.cache_store("huge", _arrays(40))
    assert [p.stem for p in cache.glob("*.npz")] == ["small"]


def test_an_entry_being_written_by_another_process_is_left_alone(cache: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV, str(10 / 1024))
    cache.mkdir(parents=True)
    partial = cache / ".k.npz.123-0.part.npz"
    partial.write_bytes(b"x" * 40 * KIB)
    fi.cache_store("k", _arrays(4))
    assert partial.exists() and (cache / "k.npz").exists()
    t = partial.stat().st_mtime - 7200  # a crashed writer's leftover counts and goes
    os.utime(partial, (t, t))
    fi.cache_store("k2", _arrays(4))
    assert not partial.exists()


@pytest.mark.parametrize("bad", ["lots", "-5", "nan"])
def test_a_bad_cap_is_one_clear_error_before_anything_is_computed(cache: Path, monkeypatch, bad: str) -> None:
    monkeypatch.setenv(ENV, bad)
    with pytest.raises(MedgenError, match=ENV):
        fi.cache_load("anything", need_features=False)
