"""The default FID path: folded/traced network (against pytorch-fid's own module), its cache, and
the Schur-form trace (against pytorch-fid's Fréchet distance)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance as pf_frechet

from medgen_cli.metrics import fid as F
from medgen_cli.metrics.fid import fast as fid_fast

REPO = Path(__file__).resolve().parents[2]


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 40, 52, generator=g)


def _cached_files(dims: int) -> list[Path]:
    from medgen_cli.metrics.fid.weights import weights_cache_dir

    return sorted(weights_cache_dir().glob(f"*-f{fid_fast.FORMAT}-*-fid-fast-{dims}-cpu.pt"))


def test_folded_network_equals_pytorch_fids_module(fid_env) -> None:
    """Batch norms folded, 1x1 convolutions through oneDNN, channels-last, chunked over two
    single-threaded workers: the features of pytorch-fid's unmodified module to rounding."""
    model = fid_fast.eager_folded(F.resolve_weights(), 192)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(type(m).__name__ == "Conv1x1" for m in model.modules()) == 1  # Conv2d_3b_1x1
    images = _images(7, 0)
    fast = F.FeatureExtractor(dims=192)
    fast.workers, fast.CPU_CHUNK = 2, 3  # 7 images: chunks of 3, 3, 1 on two threads
    ref = F.FeatureExtractor(dims=192, exact=True).features(images)
    got = fast.features(images, batch_size=5)
    assert got.shape == ref.shape == (7, 192)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert np.abs(got - ref).max() > 0  # really another computation, not the exact path
    # one worker (OMP_NUM_THREADS=1): the same chunks, run in turn, the same features
    sizes: list[int] = []
    forward = fast._forward
    fast._forward = lambda chunk: sizes.append(len(chunk)) or forward(chunk)
    fast.workers = 1
    np.testing.assert_array_equal(fast.features(images, batch_size=5), got)
    assert sizes == [3, 2, 2]


def test_merged_pointwise_blocks_equal_pytorch_fids_blocks(fid_env) -> None:
    """Mixed_5b..7c with their input-reading 1x1 convolutions merged into one and the average pool
    moved after its 1x1 convolution: pool3 features of pytorch-fid's unmodified network."""
    from medgen_cli.metrics.fid.inception import inception_for_dims

    weights = F.resolve_weights()
    model = fid_fast.eager_folded(weights, 2048).eval()
    merged = [m for m in model.modules() if type(m).__name__ == "MergedPointwise"]
    assert len(merged) == 10  # Mixed_5b-d, 6b-e, 7a, 7b, 7c
    assert sum(m.pooled >= 0 for m in merged) == 8  # every average-pool branch but Mixed_7c's max pool
    images = _images(2, 3)
    with torch.no_grad():
        ref = inception_for_dims(weights, 2048).eval()(images)[0]
        got = model(images.contiguous(memory_format=torch.channels_last))[0]
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-4, rtol=0)


def test_traced_network_is_cached_verified_and_rebuilt_when_corrupt(fid_env, monkeypatch) -> None:
    for stale in _cached_files(64):  # the weights folder is shared between tests
        stale.unlink()
    images = _images(4, 1)
    first = F.FeatureExtractor(dims=64).features(images)
    [cached] = _cached_files(64)
    record = json.loads(cached.with_suffix(".json").read_text())
    assert record["dims"] == 64 and len(record["sha256"]) == 64

    def no_rebuild(*a, **k):
        raise AssertionError("the cached network was rebuilt")

    with monkeypatch.context() as m:
        m.setattr(fid_fast, "eager_folded", no_rebuild)
        again = F.FeatureExtractor(dims=64)
        assert isinstance(again.model, torch.jit.ScriptModule)
        np.testing.assert_array_equal(again.features(images), first)

    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF  # corrupt one byte: the checksum no longer matches
    cached.write_bytes(bytes(data))
    rebuilt: list[int] = []
    real = fid_fast.eager_folded
    monkeypatch.setattr(fid_fast, "eager_folded", lambda *a: rebuilt.append(1) or real(*a))
    np.testing.assert_array_equal(F.FeatureExtractor(dims=64).features(images), first)
    assert rebuilt == [1]


def test_cached_fast_path_never_imports_pytorch_fid_or_torchvision(fid_env) -> None:
    """The point of the cache: a cold ``medgen eval fid`` skips ~3 s of torchvision/dynamo imports."""
    F.FeatureExtractor(dims=64)  # make sure the cache exists
    code = ("import sys, torch; from medgen_cli.metrics.fid import FeatureExtractor; "
            "ex = FeatureExtractor(dims=64); ex.features(torch.rand(2, 3, 32, 32)); "
            "print(sorted(m for m in ('pytorch_fid', 'torchvision') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _stats(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    x = rng.gamma(2.0, size=(n, d)) @ rng.normal(size=(d, d)) + shift
    return np.mean(x, 0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("n,d", [(400, 24), (100, 512)])  # full rank; N < d (rank-deficient product)
def test_schur_trace_equals_pytorch_fid(n: int, d: int) -> None:
    rng = np.random.default_rng(n + d)
    a, b = _stats(rng, n, d), _stats(rng, n, d, shift=0.3)
    expected = pf_frechet(*a, *b)
    assert F.frechet_distance(*a, *b, sqrtm="schur") == pytest.approx(expected, rel=1e-12, abs=1e-12)
    if n < d:  # where the symmetric route is not pytorch-fid's value: it does not hide a difference
        assert abs(F.frechet_distance(*a, *b, sqrtm="eigh") - expected) > 1e-9


def test_schur_falls_back_to_scipys_route_where_sqrtm_would_retry_or_fail() -> None:
    from medgen_cli.metrics.fid import stats as F
    mu = np.zeros(3)
    s1, s2 = np.diag([1.0, 0.0, 0.0]), np.diag([0.0, 0.0, 1.0])  # product 0: three zero eigenvalues
    assert F._sqrt_eigenvalues_schur(s1 @ s2) is None
    assert F.frechet_distance(mu, s1, mu, s2, sqrtm="schur") == pytest.approx(pf_frechet(mu, s1, mu, s2), abs=1e-12)
    s1, s2 = np.eye(2), np.diag([-1.0, 1.0])  # an imaginary root of 1: pytorch-fid raises
    with pytest.raises(F.FIDNumericalError):
        F.frechet_distance(np.zeros(2), s1, np.zeros(2), s2, sqrtm="schur")


def test_other_devices_get_the_eager_folded_module_without_onednn(fid_env) -> None:
    model = fid_fast.fast_inception(F.resolve_weights(), 64, "cuda")  # built on the CPU, moved later
    assert not isinstance(model, torch.jit.ScriptModule)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(type(m).__name__ == "Conv1x1" for m in model.modules())  # oneDNN is CPU only
