"""What ``medgen eval fid`` reads: image folders (as pytorch-fid), ``.npz`` statistics, and the cache.

Image folders are read exactly as pytorch-fid reads them: the sorted union of ``*.<ext>`` globs for
its extensions (case-sensitive, not recursive), ``PIL.Image.open(p).convert("RGB")`` (grayscale
is repeated, alpha dropped), ``ToTensor`` to [0, 1], batches in file order. Two deliberate
differences, neither changing a value pytorch-fid can produce:

* images of different sizes are allowed: a batch is split where the size changes (pytorch-fid
  fails to stack them; its ``--batch-size 1`` gives the same numbers as medgen);
* a corrupt file stops the run with an error naming it.

16-bit PNGs are converted as pytorch-fid converts them (Pillow saturates values above 255, so
most pixels become white); medgen warns and suggests converting to 8-bit first.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path
from medgen_cli.metrics.prdc import check_sample_count

if TYPE_CHECKING:  # pragma: no cover
    import torch

# pytorch_fid.fid_score.IMAGE_EXTENSIONS (copied to keep input detection free of a torch import;
# a test checks they stay equal).
IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
CACHE_VERSION = "medgen-fid-1"
# Features are cached with the statistics (needed for KID) only below this size.
_MAX_CACHED_FEATURE_BYTES = 256 << 20
# The statistics cache's cap: one 2048-dim image reference is ~32 MiB of covariance plus its
# features (~50 MiB for 1,000 images), a volume reference three times that; 1 GiB keeps about a
# dozen references (seven evaluations once grew an uncapped cache to 364 MB).
CACHE_LIMIT_ENV = "MEDGEN_FID_CACHE_MB"
DEFAULT_CACHE_MB = 1024


@dataclass
class ImageReadReport:
    """Facts about an image folder worth warning about."""

    modes: dict[str, int] = field(default_factory=dict)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    sixteen_bit: list[str] = field(default_factory=list)


def list_images(folder: Path) -> list[Path]:
    """pytorch-fid's file list: sorted union of ``folder.glob('*.<ext>')``."""
    return sorted(f for ext in IMAGE_EXTENSIONS for f in folder.glob(f"*.{ext}"))


def list_niftis(folder: Path) -> list[Path]:
    """Sorted ``*.nii`` and ``*.nii.gz`` files of a folder (not recursive)."""
    return sorted(f for f in folder.iterdir() if f.is_file() and f.name.endswith(NIFTI_SUFFIXES))


def detect_kind(path: Path) -> str:
    """Classify an input as ``"stats"`` (.npz), ``"images"`` or ``"volumes"``.

    Raises:
        MedgenError: missing path, unsupported file, empty folder or a folder mixing both kinds.
    """
    if not path.exists():
        raise MedgenError(f"input not found: {path}")
    if path.is_file():
        if path.suffix == ".npz":
            return "stats"
        raise MedgenError(f"{path} is a file but not a .npz of statistics",
                          "give a folder of images, a folder of NIfTI volumes or a .npz from --save-stats")
    images, volumes = list_images(path), list_niftis(path)
    if images and volumes:
        raise MedgenError(f"{path} holds both images ({len(images)}) and NIfTI volumes ({len(volumes)})",
                          "put them in separate folders")
    if images:
        return "images"
    if volumes:
        return "volumes"
    raise MedgenError(f"no images or NIfTI volumes in {path}",
                      f"expected *.{{{','.join(IMAGE_EXTENSIONS)}}} (lower case, as pytorch-fid) or *.nii[.gz]")


def check_inputs(real: Path, fake: Path | None, prdc_k: int | None = None) -> tuple[str, str | None]:
    """Validate REAL and FAKE before anything is computed: each exists and holds one kind of
    input, both hold the same kind (statistics match either), a sample folder holds exactly
    the files its ``manifest.json`` lists (see :mod:`medgen_cli.engine.outputs`), and with
    ``prdc_k`` an image folder holds more than ``prdc_k`` images (precision/recall's neighbours).

    Returns:
        The kinds of REAL and FAKE (``None`` without FAKE).

    Raises:
        MedgenError: one line naming the input at fault.
    """
    from medgen_cli.data.sample_manifest import check_against_manifest

    kinds = {}
    for role, path in (("REAL", real), ("FAKE", fake)):
        if path is None:
            continue
        kind = detect_kind(Path(path))
        if kind != "stats":
            files = list_images(Path(path)) if kind == "images" else list_niftis(Path(path))
            check_against_manifest(Path(path), files, "images" if kind == "images" else "NIfTI volumes")
            if prdc_k is not None and kind == "images":
                check_sample_count(len(files), prdc_k, role)
        kinds[role] = kind
    real_kind, fake_kind = kinds["REAL"], kinds.get("FAKE")
    if fake_kind is not None and "stats" not in (real_kind, fake_kind) and real_kind != fake_kind:
        raise MedgenError(f"REAL holds {real_kind} but FAKE holds {fake_kind}",
                          "compare images with images or NIfTI volumes with NIfTI volumes")
    return real_kind, fake_kind


def rgb_to_tensor(rgb: Any) -> "torch.Tensor":
    """``torchvision.transforms.functional.to_tensor`` of an RGB ``PIL`` image, with the same
    operations (uint8 HWC → CHW, float32, divided by 255), so the same values, without importing
    torchvision: each DataLoader worker would import it anew (~2 CPU s each, four per
    ``eval fid`` of two folders, competing with the network for the cores)."""
    import torch

    hwc = torch.from_numpy(np.array(rgb, np.uint8, copy=True)).view(rgb.size[1], rgb.size[0], 3)
    return hwc.permute((2, 0, 1)).contiguous().to(dtype=torch.get_default_dtype()).div(255)


class _ImageFiles:
    """Map-style dataset returning (tensor or None, error text, PIL mode) — errors travel as text
    so a DataLoader worker does not wrap them in its own traceback."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, str, str]:
        from PIL import Image

        path = self.files[i]
        try:
            with Image.open(path) as img:
                mode = img.mode
                rgb = img.convert("RGB")
            return rgb_to_tensor(rgb), "", mode
        except Exception as exc:  # PIL raises many types for truncated/corrupt files
            return None, f"{type(exc).__name__}: {exc}".splitlines()[0], ""


def _collate(items: list[tuple[Any, str, str]]) -> list[tuple[Any, str, str]]:
    return items


def image_features(files: list[Path], get_extractor: Callable[[], Any], batch_size: int = 50,
                   workers: int = 0, on_batch: Callable[[int], None] | None = None
                   ) -> tuple[np.ndarray, ImageReadReport]:
    """Features of image files in pytorch-fid's order and batches.

    Args:
        files: image paths (see :func:`list_images`).
        get_extractor: returns the :class:`~medgen_cli.metrics.fid.extractor.FeatureExtractor` to use.
        batch_size: images per batch (pytorch-fid's default 50; equal-sized images give its batches).
        workers: DataLoader worker processes (0 reads in the main process).
        on_batch: called with the number of images done after each batch.

    Returns:
        (float64 features ``[N, dims]``, facts for warnings).

    Raises:
        MedgenError: a file cannot be read (named in the message).
    """
    import torch

    extractor = get_extractor()
    loader = torch.utils.data.DataLoader(_ImageFiles(files), batch_size=max(1, batch_size), shuffle=False,
                                         num_workers=workers, collate_fn=_collate)
    report = ImageReadReport()

    def batches() -> Any:
        """Same-size runs of each loaded batch, decoded here while the extractor's threads run
        the previous ones."""
        start = 0
        for items in loader:
            for j, (tensor, err, mode) in enumerate(items):
                if tensor is None:
                    raise MedgenError(f"cannot read image {files[start + j]}: {err}", "remove or replace the file")
                report.modes[mode] = report.modes.get(mode, 0) + 1
                report.sizes.add(tuple(tensor.shape[1:]))
                if mode.startswith("I;16") or mode == "I":
                    report.sixteen_bit.append(str(files[start + j]))
            # Split the batch where the image size changes; same-size runs go through as one batch.
            run = 0
            while run < len(items):
                end = run + 1
                while end < len(items) and items[end][0].shape == items[run][0].shape:
                    end += 1
                yield torch.stack([t for t, _, _ in items[run:end]])
                run = end
            start += len(items)

    out = np.empty((len(files), extractor.dims))
    pos = 0
    for feats in extractor.map_batches(batches()):
        out[pos:pos + feats.shape[0]] = feats
        pos += feats.shape[0]
        if on_batch is not None:
            on_batch(int(feats.shape[0]))
    return out, report


def load_stats_npz(path: Path, keys: tuple[str, str] = ("mu", "sigma")) -> tuple[np.ndarray, np.ndarray]:
    """Read ``mu`` and ``sigma`` from a pytorch-fid style ``.npz``.

    Raises:
        MedgenError: unreadable file or missing keys.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise MedgenError(f"{path} has no {', '.join(missing)} (it holds {', '.join(f.files) or 'nothing'})",
                                  "use a .npz written by --save-stats or pytorch-fid --save-stats")
            return f[keys[0]][:], f[keys[1]][:]
    except MedgenError:
        raise
    except Exception as exc:
        raise MedgenError(f"cannot read statistics {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def save_stats_npz(path: Path, arrays: dict[str, np.ndarray], compressed: bool = True) -> Path:
    """Write arrays atomically to ``path`` (pytorch-fid uses ``np.savez_compressed`` with mu/sigma)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object keeps numpy from appending another ".npz"
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return path


def cache_dir() -> Path:
    """``$MEDGEN_CACHE_DIR/fid`` or ``~/.cache/medgen/fid``."""
    root = os.environ.get("MEDGEN_CACHE_DIR") or str(Path("~/.cache/medgen").expanduser())
    return Path(root) / "fid"


def cache_limit_bytes() -> int:
    """The statistics cache's size cap: ``$MEDGEN_FID_CACHE_MB`` MiB (default
    :data:`DEFAULT_CACHE_MB`; 0 stores nothing).

    Raises:
        MedgenError: the variable is not a non-negative number.
    """
    raw = os.environ.get(CACHE_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise MedgenError(f"{CACHE_LIMIT_ENV}={raw!r} is not a size in MiB",
                          f"set it to a number such as {DEFAULT_CACHE_MB} (0 disables the cache) or unset it")
    return int(mb * (1 << 20))


def prune_cache(limit: int, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used entries (oldest modification time first; a cache hit
    touches its entry) until the ``*.npz`` entries total at most ``limit`` bytes.

    Args:
        limit: the cap in bytes.
        keep: an entry never deleted (the one just written), unless it alone exceeds ``limit``.

    Returns:
        The deleted files.
    """
    entries = []
    stale = time.time_ns() - 3600 * 10**9
    for p in cache_dir().glob("*.npz"):
        try:
            st = p.stat()
        except OSError:  # removed by a concurrent evaluation
            continue
        if p.name.startswith(".") and st.st_mtime_ns > stale:
            continue  # another evaluation's entry being written; a crashed one's counts after an hour
        entries.append((st.st_mtime_ns, p.name, p, st.st_size))
    # Oldest first; an entry that alone exceeds the cap goes before any other.
    entries.sort(key=lambda e: (e[3] <= limit, e[0], e[1]))
    total = sum(e[3] for e in entries)
    removed = []
    for _, _, p, size in entries:
        if total <= limit:
            break
        if p == keep and size <= limit:
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            continue
        total -= size
        removed.append(p)
    return removed


def content_key(files: list[Path], extra: dict[str, Any]) -> str:
    """Hash of file names, sizes and modification times plus the settings that change the statistics."""
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **extra}, sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def cache_load(key: str, need_features: bool) -> dict[str, np.ndarray] | None:
    """Cached arrays for ``key`` (None when absent, unreadable, or lacking features that are needed).

    Raises:
        MedgenError: a bad ``$MEDGEN_FID_CACHE_MB`` (checked here, before anything is computed).
    """
    cache_limit_bytes()
    p = cache_dir() / f"{key}.npz"
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception:  # a damaged cache entry is recomputed, never trusted
        return None
    if need_features and not any(k.startswith("features") for k in data):
        return None
    try:
        os.utime(p)  # recently used: pruned last
    except OSError:
        pass
    return data


def cache_store(key: str, arrays: dict[str, np.ndarray]) -> None:
    """Store arrays under ``key``, then delete the least recently used entries beyond the cap
    (:func:`cache_limit_bytes`); features are dropped when large. Cache errors are not fatal."""
    keep = {}
    feat_bytes = sum(v.size * 4 for k, v in arrays.items() if k.startswith("features"))
    for k, v in arrays.items():
        if k.startswith("features"):
            if feat_bytes <= _MAX_CACHED_FEATURE_BYTES:
                keep[k] = v.astype(np.float32)  # exact: the features are float32 values
        else:
            keep[k] = v
    limit = cache_limit_bytes()
    if limit <= 0:
        return
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        entry = save_stats_npz(cache_dir() / f"{key}.npz", keep, compressed=False)
        prune_cache(limit, keep=entry)
    except OSError:
        pass
