"""FID during training: :class:`FIDTracker` scores generated images against a fixed real set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.metrics.fid.evaluate import FIDOptions, set_stats
from medgen_cli.metrics.fid.extractor import FeatureExtractor, LazyExtractor
from medgen_cli.metrics.fid.stats import DEFAULT_SQRTM, compute_stats, frechet_distance, kid
from medgen_cli.metrics.prdc import DEFAULT_K as PRDC_DEFAULT_K
from medgen_cli.metrics.prdc import kth_neighbour_radii, prdc

if TYPE_CHECKING:  # pragma: no cover
    import torch


class FIDTracker:
    """FID (and KID, precision/recall/density/coverage) of generated images against a fixed real
    set, for training loops.

    The extractor is loaded once and the real features/statistics are computed once.

    Args:
        real_images: float tensor ``[N, C, H, W]`` in [0, 1] (C = 1 or 3).
        device: torch device.
        weights: weights path (see :func:`~medgen_cli.metrics.fid.weights.resolve_weights`).
        compute_kid: also return KID and precision, recall, density and coverage
            (:mod:`medgen_cli.metrics.prdc`, k = 5); the real features are kept in memory for them.
        dims: Inception feature size.
        batch_size: images per forward pass.
        sqrtm: ``"eigh"`` (fast) or ``"scipy"`` (pytorch-fid's); see
            :func:`~medgen_cli.metrics.fid.stats.frechet_distance`.
        real_folder: a folder of images to use as the real set instead of ``real_images``, read
            exactly as ``medgen eval fid`` reads it, its features cached by content there too.
        exact: see :class:`~medgen_cli.metrics.fid.extractor.FeatureExtractor`.
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
        # workers=0: no reader processes forked from inside a training run (a one-off, cached pass)
        opts = FIDOptions(dims=dims, device=str(self.extractor.device), weights=weights, kid=True, exact=exact,
                          workers=0)
        lazy = LazyExtractor(dims, opts.device, weights, exact, loaded=self.extractor)  # share the loaded network
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
