"""``medgen eval fid`` as a library call: statistics of each input, FID/KID, warnings, caching.

An input is a folder of images (pytorch-fid's reading), a ``.npz`` with ``mu``/``sigma``
(pytorch-fid's format), or a folder of NIfTI volumes (2.5D FID, see
:mod:`medgen_cli.metrics.fid.volumes`; their ``.npz`` holds ``mu_<plane>``/``sigma_<plane>``).
The reference (first) input's statistics are cached under ``cache_dir()`` keyed by a hash of its
file names, sizes and modification times, the feature size, the weights and the volume options.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.metrics.fid import inputs as fi
from medgen_cli.metrics.fid import shard
from medgen_cli.metrics.fid.extractor import SUPPORTED_DIMS, LazyExtractor
from medgen_cli.metrics.fid.stats import (DEFAULT_SQRTM, SQRTM_METHODS, compute_stats, frechet_distance, kid,
                                          kid_subset_size)
from medgen_cli.metrics.fid.volumes import PLANES, volume_features, window_warning
from medgen_cli.metrics.fid.weights import resolve_weights, weights_fingerprint
from medgen_cli.metrics.prdc import DEFAULT_K as PRDC_DEFAULT_K
from medgen_cli.metrics.prdc import NAMES as PRDC_NAMES
from medgen_cli.metrics.prdc import prdc

IMAGE_PLANE = "image"  # the single "plane" of a 2D image set

# progress(description, total) -> advance(n) callback; the CLI supplies a rich bar.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class FIDOptions:
    """Settings of one evaluation (CLI flags map one to one)."""

    dims: int = 2048
    device: str = "cpu"
    batch_size: int = 50
    workers: int | None = None  # None: 0 for small folders, else min(8, CPUs)
    weights: str | Path | None = None
    kid: bool = False
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prdc: bool = False  # precision, recall, density, coverage (metrics/prdc.py)
    prdc_k: int = PRDC_DEFAULT_K
    center_fraction: float = 1.0
    window: tuple[float, float] | None = None
    use_cache: bool = True
    sqrtm: str = DEFAULT_SQRTM  # "schur" (fast, equal to pytorch-fid), "eigh" (as fast) or "scipy" (its own)
    exact: bool = False  # pytorch-fid's NCHW network (bit-identical features) instead of channels-last

    @property
    def needs_features(self) -> bool:
        """KID and precision/recall need each sample's features, not only mean and covariance."""
        return self.kid or self.prdc

    def extractor(self) -> LazyExtractor:
        """A lazy feature extractor with these settings (loaded on first use)."""
        return LazyExtractor(self.dims, self.device, self.weights, self.exact)


@dataclass
class SetStats:
    """Statistics of one input: per plane (``image`` for 2D) mean/covariance and maybe features."""

    path: Path
    kind: str
    source: str  # computed | cache | npz
    stats: dict[str, tuple[np.ndarray, np.ndarray]]
    features: dict[str, np.ndarray] | None = None
    n: int | None = None  # images or volumes; None for .npz
    n_features: int | None = None  # feature rows per plane (slices for volumes)
    warnings: list[str] = field(default_factory=list)
    value_range: tuple[float, float] | None = None  # volumes: min, max of the voxels (cached too)

    def arrays(self) -> dict[str, np.ndarray]:
        """npz layout: ``mu``/``sigma`` for images, ``mu_<plane>``/``sigma_<plane>`` for volumes."""
        out: dict[str, np.ndarray] = {}
        for plane, (mu, sigma) in self.stats.items():
            sfx = "" if plane == IMAGE_PLANE else f"_{plane}"
            out[f"mu{sfx}"], out[f"sigma{sfx}"] = mu, sigma
        return out


def _npz_stats(path: Path, dims: int) -> SetStats:
    try:
        with np.load(path, allow_pickle=False) as f:
            names = set(f.files)
    except Exception as exc:  # not a zip, truncated, pickled objects...
        raise MedgenError(f"cannot read statistics {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if {"mu", "sigma"} <= names:
        stats = {IMAGE_PLANE: fi.load_stats_npz(path)}
        kind = "images"
    elif all({f"mu_{p}", f"sigma_{p}"} <= names for p in PLANES):
        stats = {p: fi.load_stats_npz(path, (f"mu_{p}", f"sigma_{p}")) for p in PLANES}
        kind = "volumes"
    else:
        fi.load_stats_npz(path)  # raises the missing-keys error
        raise AssertionError("unreachable")
    got = next(iter(stats.values()))[0].shape[0]
    if got != dims:
        raise MedgenError(f"{path} holds {got}-d statistics but --dims is {dims}", f"pass --dims {got}")
    return SetStats(path, kind, "npz", stats)


def _workers(opts: FIDOptions, n_files: int) -> int:
    if opts.workers is not None:
        return opts.workers
    # Worker start-up costs more than it saves on small folders; at 300 + 300 images on 2 cores
    # two workers already won (68.5 s vs 75.4 s wall, same FID).
    return 0 if n_files < 200 else min(8, max(1, (os.cpu_count() or 1) // shard.group()[1]))


def _compute(path: Path, kind: str, opts: FIDOptions, extractor: LazyExtractor,
             progress: ProgressFactory | None, label: str) -> SetStats | None:
    """Features and statistics of an image or NIfTI folder. Under ``--nproc`` each rank extracts
    its block (:mod:`medgen_cli.metrics.fid.shard`) and rank 0 alone returns the result."""
    files = fi.list_images(path) if kind == "images" else fi.list_niftis(path)
    unit = "images" if kind == "images" else "volumes"
    count = shard.GlobalCount(progress(f"{label}: {len(files)} {unit}", len(files)) if progress else None,
                                  len(files))
    mine = shard.part(files, opts.batch_size if kind == "images" else 1)
    part = _extract(mine, kind, opts, extractor, count) if mine else None
    count.wait()
    parts = [p for p in shard.gather(part) or [] if p is not None]
    if not shard.is_main():
        return None
    features = {p: np.concatenate([x[0][p] for x in parts]) for p in parts[0][0]}
    if kind == "images":
        sixteen = [f for x in parts for f in x[1]["sixteen_bit"]]
        sizes = set().union(*(x[1]["sizes"] for x in parts))
        warn = []
        if sixteen:
            warn.append(f"{len(sixteen)} 16-bit image(s) in {path} (e.g. {sixteen[0]}) are "
                        "read as pytorch-fid reads them: values above 255 saturate — convert to 8-bit first")
        if len(sizes) > 1:
            warn.append(f"{path} mixes image sizes {sorted(sizes)[:4]}; each is resized to 299x299 "
                        "(same values as pytorch-fid --batch-size 1)")
        value_range = None
    else:
        shapes = set().union(*(x[1]["shapes"] for x in parts))
        value_range = (min(x[1]["range"][0] for x in parts), max(x[1]["range"][1] for x in parts))
        warn = [w for w in [window_warning(value_range, opts.window, str(path))] if w]
        if len(shapes) > 1:
            warn.append(f"{path} holds volumes of different shapes {sorted(shapes)[:4]}; every slice is "
                        "resized to 299x299 (aspect ratio not kept)")
    stats = {p: compute_stats(f) for p, f in features.items()}
    rows = next(iter(features.values())).shape[0]
    return SetStats(path, kind, "computed", stats, features, len(files), rows, warn, value_range)


def _extract(files: list[Path], kind: str, opts: FIDOptions, extractor: LazyExtractor,
             advance: Callable[[int], None]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Features of ``files`` per plane and the facts the warnings need."""
    if kind == "images":
        feats, report = fi.image_features(files, extractor, opts.batch_size, _workers(opts, len(files)), advance)
        return {IMAGE_PLANE: feats}, {"sixteen_bit": report.sixteen_bit, "sizes": report.sizes}
    features, shapes, value_range = volume_features(files, extractor, opts.center_fraction, opts.window,
                                                    opts.batch_size, advance)
    return features, {"shapes": shapes, "range": value_range}


def _cache_key(path: Path, kind: str, opts: FIDOptions) -> str:
    files = fi.list_images(path) if kind == "images" else fi.list_niftis(path)
    extra: dict[str, Any] = {"kind": kind, "dims": opts.dims,
                             "weights": weights_fingerprint(resolve_weights(opts.weights))}
    if kind == "volumes":
        extra.update(center_fraction=opts.center_fraction, window=opts.window)
    if opts.exact:  # features of the NCHW network differ from the default's by ~1e-5
        extra["exact"] = True
    return fi.content_key(files, extra)


def set_stats(path: str | Path, opts: FIDOptions, extractor: LazyExtractor | None = None,
              progress: ProgressFactory | None = None, label: str = "", cache: bool = False) -> SetStats | None:
    """Statistics (and features, when computed or cached) of one input (``None`` on the ranks
    other than 0 of a ``--nproc`` evaluation, which only extract their share).

    Args:
        path: image folder, NIfTI folder or ``.npz``.
        opts: evaluation options.
        extractor: shared lazy extractor (one is made when None).
        progress: progress-bar factory.
        label: name shown on the progress bar.
        cache: read/write the content-hash cache for this input.
    """
    path = Path(path)
    kind = fi.detect_kind(path)
    if kind == "stats":
        if opts.needs_features:
            flag = "--kid" if opts.kid else "--prdc"
            raise MedgenError(f"{flag} needs image features but {path} holds only statistics",
                              "give the image or volume folder instead of the .npz")
        return _npz_stats(path, opts.dims)
    extractor = extractor or opts.extractor()
    key = _cache_key(path, kind, opts) if cache and opts.use_cache and shard.is_main() else None
    if key is not None or shard.group()[1] > 1:
        hit = fi.cache_load(key, need_features=opts.needs_features) if key is not None else None
        if shard.broadcast(hit is not None):  # under --nproc rank 0 reads the cache; the others wait
            if hit is None:
                return None
            planes = [IMAGE_PLANE] if kind == "images" else list(PLANES)
            sfx = {p: "" if p == IMAGE_PLANE else f"_{p}" for p in planes}
            stats = {p: (hit[f"mu{sfx[p]}"], hit[f"sigma{sfx[p]}"]) for p in planes}
            feats = ({p: hit[f"features{sfx[p]}"].astype(np.float64) for p in planes}
                     if f"features{sfx[planes[0]]}" in hit else None)
            meta, span = hit.get("n"), hit.get("value_range")
            n = int(meta[0]) if meta is not None else None
            rows = int(meta[1]) if meta is not None else None
            span = (float(span[0]), float(span[1])) if span is not None else None
            warn = [w for w in [window_warning(span, opts.window, str(path))] if w]  # as when computed
            return SetStats(path, kind, "cache", stats, feats, n, rows, warn, span)
    result = _compute(path, kind, opts, extractor, progress, label)
    if key is not None and result is not None:
        arrays = result.arrays()
        for p, f in (result.features or {}).items():
            arrays["features" + ("" if p == IMAGE_PLANE else f"_{p}")] = f
        arrays["n"] = np.array([result.n, result.n_features])
        if result.value_range is not None:
            arrays["value_range"] = np.array(result.value_range, dtype=np.float64)
        fi.cache_store(key, arrays)
    return result


def compare(real: SetStats, fake: SetStats, opts: FIDOptions) -> dict[str, Any]:
    """FID (and KID) per plane and overall; for volumes the overall value is the mean of the planes."""
    if real.kind != fake.kind:
        raise MedgenError(f"cannot compare {real.kind} ({real.path}) with {fake.kind} ({fake.path})",
                          "give two image sets or two volume sets")
    planes: dict[str, dict[str, float]] = {}
    for p in real.stats:
        row = {"fid": frechet_distance(*real.stats[p], *fake.stats[p], sqrtm=opts.sqrtm)}
        if opts.needs_features:
            assert real.features is not None and fake.features is not None
        if opts.kid:
            row["kid"], row["kid_std"] = kid(real.features[p], fake.features[p], opts.kid_subsets,
                                             opts.kid_subset_size)
        if opts.prdc:
            row.update(prdc(real.features[p], fake.features[p], opts.prdc_k))
        planes[p] = row
    result: dict[str, Any] = {
        "fid": float(np.mean([r["fid"] for r in planes.values()])),
        "kind": real.kind, "dims": opts.dims,
        "real": describe(real), "fake": describe(fake),
    }
    if opts.kid:
        result["kid"] = float(np.mean([r["kid"] for r in planes.values()]))
        result["kid_std"] = float(np.mean([r["kid_std"] for r in planes.values()]))
        rows = [f.shape[0] for s in (real, fake) for f in (s.features or {}).values()]
        result["kid_subset_size"] = kid_subset_size(min(rows), min(rows), opts.kid_subset_size)
        result["kid_subsets"] = opts.kid_subsets
    if opts.prdc:
        for name in PRDC_NAMES:
            result[name] = float(np.mean([r[name] for r in planes.values()]))
        result["prdc_k"] = opts.prdc_k
    if real.kind == "volumes":
        result["planes"] = planes
    return result


def describe(s: SetStats) -> dict[str, Any]:
    """JSON-friendly summary of an input."""
    return {"path": str(s.path), "kind": s.kind, "source": s.source, "n": s.n, "samples": s.n_features}


def check_request(real: str | Path, fake: str | Path | None, opts: FIDOptions, save_stats: str | Path | None = None,
                  overwrite: bool = False) -> FIDOptions:
    """Refuse a bad request before any feature pass (also before ``--nproc`` starts processes);
    the options to use (KID and precision/recall off without ``fake``).

    Raises:
        MedgenError: bad options, paths, device or ``--save-stats`` target.
    """
    from medgen_cli.devices import resolve_device
    from medgen_cli.io import check_writable

    if fake is None and save_stats is None:
        raise MedgenError("give FAKE to compare with, or --save-stats OUT.npz to save REAL's statistics")
    if opts.dims not in SUPPORTED_DIMS:
        raise MedgenError(f"--dims {opts.dims} is not supported", f"choose one of {SUPPORTED_DIMS}")
    if opts.sqrtm not in SQRTM_METHODS:
        raise MedgenError(f"--sqrtm {opts.sqrtm!r} is not supported", "use schur, scipy or eigh")
    resolve_device(opts.device)  # a device this machine lacks fails now, not after reading REAL
    if save_stats is not None:
        if Path(save_stats).suffix != ".npz":
            raise MedgenError(f"--save-stats {save_stats} must end in .npz")
        check_writable(save_stats, overwrite)
    if fake is None:
        opts = FIDOptions(**{**opts.__dict__, "kid": False, "prdc": False})
    fi.check_inputs(real, fake, opts.prdc_k if opts.prdc else None)  # before the (minutes-long) feature passes
    return opts


def evaluate_fid(real: str | Path, fake: str | Path | None, opts: FIDOptions, save_stats: str | Path | None = None,
                 overwrite: bool = False, progress: ProgressFactory | None = None) -> tuple[dict[str, Any], list[str]]:
    """The library side of ``medgen eval fid``: check the request, compute REAL's statistics
    (cached by content), optionally save them, then FAKE's and the FID/KID.

    Args:
        real: the reference input (image folder, NIfTI folder or ``.npz``).
        fake: the generated input, or ``None`` to only save REAL's statistics.
        opts: evaluation options (KID and precision/recall are ignored without ``fake``).
        save_stats: write REAL's statistics to this ``.npz``.
        overwrite: replace an existing ``save_stats`` file.
        progress: progress-bar factory.

    Returns:
        The result (see :func:`compare`; ``{"saved": path}`` alone without ``fake``) and the
        warnings about the inputs.

    Raises:
        MedgenError: a bad request (options, paths, device) or unreadable inputs.
    """
    opts = check_request(real, fake, opts, save_stats, overwrite)
    extractor = opts.extractor()
    real_stats = set_stats(real, opts, extractor, progress, "REAL", cache=opts.use_cache)
    # None: a rank other than 0 under --nproc, whose share of the features went to rank 0.
    warnings = [] if real_stats is None else sample_warnings(real_stats, opts.dims, f"REAL ({real})")
    if save_stats is not None and real_stats is not None and shard.is_main():
        fi.save_stats_npz(Path(save_stats), real_stats.arrays())
    if fake is None:
        return {"saved": str(save_stats)}, warnings
    fake_stats = set_stats(fake, opts, extractor, progress, "FAKE", cache=False)
    if real_stats is None or fake_stats is None:
        return {}, []
    warnings += sample_warnings(fake_stats, opts.dims, f"FAKE ({fake})")
    result = compare(real_stats, fake_stats, opts)
    if save_stats is not None:
        result["saved"] = str(save_stats)
    return result, warnings


def sample_warnings(s: SetStats, dims: int, label: str) -> list[str]:
    """Warnings about an input, including the N < dims bias warning."""
    out = list(s.warnings)
    if s.n_features is not None and s.n_features < dims:
        unit = "images" if s.kind == "images" else "slices per plane"
        out.append(f"{label} has {s.n_features} {unit}, fewer than the {dims} feature dimensions: the covariance "
                   "is rank-deficient and FID is biased upward (compare only runs of equal size; "
                   "KID (--kid) is unbiased)")
    return out
