"""The FID feature extractor: pytorch-fid's InceptionV3 loaded once, exact or fast.

``exact=True`` runs pytorch-fid's own network (:mod:`medgen_cli.metrics.fid.inception`) as it
does, for bit-identical features; the default runs the folded, merged, channels-last network of
:mod:`medgen_cli.metrics.fid.fast` (features within ~1e-5 absolute, FID ~2e-7 relative).
:class:`LazyExtractor` builds one on first use, so runs whose inputs are all cached statistics
never load Inception.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from medgen_cli.devices import resolve_device
from medgen_cli.errors import MedgenError
from medgen_cli.metrics.fid.errors import FIDWeightsMismatch
from medgen_cli.metrics.fid.fast import fast_inception
from medgen_cli.metrics.fid.inception import inception_for_dims
from medgen_cli.metrics.fid.weights import resolve_weights

if TYPE_CHECKING:  # pragma: no cover
    import torch

SUPPORTED_DIMS = (64, 192, 768, 2048)


class FeatureExtractor:
    """pytorch-fid's InceptionV3 loaded once from a local weights file.

    Args:
        dims: feature size, one of 64, 192, 768, 2048 (pool3, the FID default).
        device: torch device (``"auto"`` picks CUDA when available).
        weights: weights path; see :func:`~medgen_cli.metrics.fid.weights.resolve_weights`.
        exact: run pytorch-fid's network exactly as it does (NCHW), for bit-identical features.
            Default: each batch norm folded into its convolution (``fuse_conv_bn_eval``: one
            pass over the activations instead of two), channels-last memory format (oneDNN's
            fast layout), and on CPU small single-threaded chunks, one per core, in parallel;
            the features then differ from pytorch-fid's by ~1e-5 absolute (rounding order), FID
            by ~2e-7 relative (300 + 300 images). The network is pytorch-fid's module traced
            once and cached (:mod:`medgen_cli.metrics.fid.fast`).
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
                yield concat_features([self._forward(c) for c in (batch.split(self.CPU_CHUNK) if self.chunked else (batch,))])
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
                        yield concat_features([f.result() for f in pending.popleft()])
                while pending:
                    yield concat_features([f.result() for f in pending.popleft()])
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


def concat_features(parts: list[np.ndarray]) -> np.ndarray:
    """The rows of ``parts`` as one array (the one part itself when there is one)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


class LazyExtractor:
    """Builds the :class:`FeatureExtractor` on first use, so cached/.npz-only runs never load
    Inception.

    Args:
        dims, device, weights, exact: as :class:`FeatureExtractor`.
        loaded: an extractor already loaded with these settings, to share instead of building one.
    """

    def __init__(self, dims: int = 2048, device: str | Any = "cpu", weights: str | Path | None = None,
                 exact: bool = False, loaded: FeatureExtractor | None = None) -> None:
        self.dims, self.device, self.weights, self.exact = dims, device, weights, exact
        self.loaded = loaded

    def __call__(self) -> FeatureExtractor:
        if self.loaded is None:
            self.loaded = FeatureExtractor(self.dims, self.device, self.weights, exact=self.exact)
        return self.loaded
