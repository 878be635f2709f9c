"""NIfTI volume dataset on MONAI transforms (what every 3D family trains on).

The pipeline per file: ``LoadImaged`` → ``EnsureChannelFirstd`` → intensity scaling →
``Resized`` to the configured size (trilinear in 3D, bilinear in 2D) → optional
``RandFlipd`` (each spatial axis, p = 0.5) and ``RandRotate90d`` (p = 0.5, first two spatial
axes) → plain float32 tensor. The deterministic part is cached lazily, within a memory bound
and per DDP rank (:mod:`medgen_cli.data.cache`), for ``cache_rate`` of the files. Items are dicts
``{"image": Tensor[1, *size], "path": str}`` (+ ``"label"``: int64 tensor when ``labels`` is given).

Intensity modes: ``minmax`` (each volume linearly to [0, 1]), ``none`` (as stored; convert-h5
outputs are already in [0, 1]), ``zscore`` (zero mean, unit std per volume).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from medgen_cli.errors import MedgenError

try:  # zlib-ng inflates the same streams ~2x faster (the float scan reads every voxel)
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover - depends on the environment
    _zlib = zlib  # type: ignore[assignment]

VOLUME_SUFFIXES = (".nii.gz", ".nii")
INTENSITY_MODES = ("minmax", "none", "zscore")


def _is_volume(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and any(p.name.endswith(s) for s in VOLUME_SUFFIXES)


def list_volume_split(root: str | Path) -> tuple[list[Path], list[Path]]:
    """The ``root/train`` and ``root/val`` NIfTI files (as written by ``medgen data convert-h5``).

    Returns:
        (train_files, val_files), each sorted; ``val_files`` may be empty.

    Raises:
        MedgenError: ``root/train`` is missing or holds no ``.nii``/``.nii.gz`` file.
    """
    root = Path(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise MedgenError(f"no train folder in {root}", "expected ROOT/train/*.nii.gz (run `medgen data convert-h5 ... --out ROOT`)")
    train = sorted(p for p in train_dir.iterdir() if _is_volume(p))
    if not train:
        raise MedgenError(f"no .nii.gz volumes in {train_dir}", "run `medgen data convert-h5 ... --out ROOT` first")
    val_dir = root / "val"
    val = sorted(p for p in val_dir.iterdir() if _is_volume(p)) if val_dir.is_dir() else []
    return train, val


def read_manifest(root: str | Path) -> list[dict[str, Any]]:
    """The records of ``root/manifest.json`` (see :mod:`medgen_cli.data.convert`).

    Raises:
        MedgenError: missing or malformed manifest.
    """
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise MedgenError(f"no manifest.json in {root}", "it is written by `medgen data convert-h5`")
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MedgenError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    if not isinstance(records, list):
        raise MedgenError(f"{path} must hold a list of records")
    return records


def manifest_labels(root: str | Path) -> dict[str, int]:
    """``{relative file: label}`` for the manifest records that carry a label."""
    return {r["file"]: int(r["label"]) for r in read_manifest(root) if r.get("label") is not None}


def _lookup_label(path: Path, labels: dict[str, int]) -> int:
    # Accept keys as full path, path relative to the split's parent ("train/x.nii.gz"), name or stem.
    name = path.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.stem
    for key in (str(path), f"{path.parent.name}/{name}", name, stem):
        if key in labels:
            return int(labels[key])
    raise MedgenError(f"no label for {path}", "every file needs a label in the manifest when conditioning on labels")


def _build_transforms(size: Sequence[int], intensity: str, flip: bool, rotate: bool) -> tuple[Any, Any]:
    """(the deterministic part, the random part or ``None``): what is cached, and what is drawn
    again on every read."""
    import torch
    from monai import transforms as mt

    if intensity not in INTENSITY_MODES:
        raise MedgenError(f"unknown intensity mode {intensity!r}", f"use one of {', '.join(INTENSITY_MODES)}")
    nd = len(size)
    if nd not in (2, 3):
        raise MedgenError(f"size must have 2 or 3 entries, not {tuple(size)}")
    keys = ["image"]
    steps: list[Any] = [
        mt.LoadImaged(keys=keys, image_only=True),
        mt.EnsureChannelFirstd(keys=keys),  # channel position from the reader's metadata
    ]
    if intensity == "minmax":
        steps.append(mt.ScaleIntensityd(keys=keys, minv=0.0, maxv=1.0))
    elif intensity == "zscore":
        steps.append(mt.NormalizeIntensityd(keys=keys))
    steps.append(mt.Resized(keys=keys, spatial_size=tuple(int(s) for s in size), mode="trilinear" if nd == 3 else "bilinear"))
    steps.append(mt.EnsureTyped(keys=keys, data_type="tensor", dtype=torch.float32, track_meta=False))
    random: list[Any] = []
    if flip:
        random += [mt.RandFlipd(keys=keys, prob=0.5, spatial_axis=a) for a in range(nd)]
    if rotate:
        random.append(mt.RandRotate90d(keys=keys, prob=0.5, max_k=3, spatial_axes=(0, 1)))
    if not random:
        return mt.Compose(steps), None
    random.append(mt.EnsureTyped(keys=keys, data_type="tensor", dtype=torch.float32, track_meta=False))
    return mt.Compose(steps), mt.Compose(random)


def _read_header(path: Path) -> Any:
    """The NIfTI-1/2 header of ``path`` (``.nii`` or ``.nii.gz``), reading only its first bytes."""
    import io

    import nibabel as nib

    with open(path, "rb") as fh:
        head = fh.read(8192)
    if path.name.endswith(".gz"):
        head = zlib.decompressobj(31).decompress(head, 540)  # 31: gzip wrapper
    size = int.from_bytes(head[:4], "little") if len(head) >= 4 else 0
    cls = nib.Nifti2Header if size in (540, int.from_bytes((540).to_bytes(4, "big"), "little")) else nib.Nifti1Header
    return cls.from_fileobj(io.BytesIO(head))


def _gzip_complete(path: Path, expected: int) -> bool:
    """Whether the gzip stream of ``path`` holds at least ``expected`` bytes.

    The gzip trailer stores the uncompressed size (mod 2**32): a truncated file ends in
    compressed bytes that match it by chance only. When it does not match (a truncated file, or
    an unusual multi-member stream) the whole stream is decompressed to decide.
    """
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() >= 18:
            fh.seek(-4, 2)
            if int.from_bytes(fh.read(4), "little") == expected % 2**32:
                return True
        fh.seek(0)
        dec, total = zlib.decompressobj(31), 0
        while chunk := fh.read(1 << 20):
            total += len(dec.decompress(chunk))
            while dec.eof and dec.unused_data:  # next gzip member
                rest = dec.unused_data
                dec = zlib.decompressobj(31)
                total += len(dec.decompress(rest))
        return dec.eof and total >= expected


def _inflate(path: Path) -> Iterator[bytes]:
    """The decompressed bytes of a (possibly multi-member) gzip file, in chunks."""
    with open(path, "rb") as fh:
        dec = _zlib.decompressobj(31)
        while chunk := fh.read(1 << 20):
            yield dec.decompress(chunk)
            while dec.eof and dec.unused_data:  # next gzip member
                rest = dec.unused_data
                dec = _zlib.decompressobj(31)
                yield dec.decompress(rest)


def _float_scan(path: Path, offset: int, count: int, dtype: Any) -> tuple[bool, int]:
    """(complete, number of non-finite values) of the ``count`` floats of ``dtype`` stored at
    ``offset`` in a NIfTI file: one streaming pass that also replaces the completeness check."""
    import numpy as np

    nbytes = count * dtype.itemsize
    if not path.name.endswith(".gz"):
        if path.stat().st_size < offset + nbytes:
            return False, 0
        data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,)) if count else np.empty(0, dtype)
        step = 1 << 22
        return True, sum(int(np.count_nonzero(~np.isfinite(data[i:i + step]))) for i in range(0, count, step))
    bad, pos, end, carry = 0, 0, offset + nbytes, b""
    for chunk in _inflate(path):
        lo, pos = pos, pos + len(chunk)  # this chunk's place in the decompressed stream
        a, b = max(lo, offset), min(pos, end)  # its part inside the voxel data
        if b <= a:
            continue
        piece = carry + chunk[a - lo:b - lo]
        whole = len(piece) // dtype.itemsize
        bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(piece, dtype, whole))))
        carry = piece[whole * dtype.itemsize:]
    return pos >= end, bad


#: (resolved path, size, mtime) -> shape of the files that passed :func:`check_volume_file`.
_CHECKED: dict[tuple[str, int, int], tuple[int, ...]] = {}


def _checked_shape(p: Path) -> tuple[int, ...]:
    """The shape of NIfTI file ``p`` once it has passed the checks of :func:`check_volume_file`."""
    import numpy as np

    hint = "re-create or remove the file (a complete .nii/.nii.gz is needed)"
    try:
        hdr = _read_header(p)
        shape = tuple(int(s) for s in hdr.get_data_shape())
        dtype, offset = hdr.get_data_dtype(), int(hdr["vox_offset"])
    except Exception as exc:  # nibabel/zlib raise many types for corrupt files
        raise MedgenError(f"cannot read NIfTI {p}: {type(exc).__name__}: {exc}".splitlines()[0], hint) from exc
    count = int(np.prod(shape))
    try:
        if dtype.kind == "f":  # only floats can hold NaN/inf; integer files keep the cheap check
            complete, bad = _float_scan(p, offset, count, dtype)
        elif p.name.endswith(".gz"):
            complete, bad = _gzip_complete(p, offset + count * dtype.itemsize), 0
        else:
            complete, bad = p.stat().st_size >= offset + count * dtype.itemsize, 0
    except (OSError, zlib.error, _zlib.error) as exc:
        raise MedgenError(f"cannot read NIfTI {p}: {exc}".splitlines()[0], hint) from exc
    if not complete:
        raise MedgenError(f"NIfTI file {p} is truncated (its data ends early)", hint)
    if bad:
        raise MedgenError(f"{p} holds {bad} non-finite voxel(s) (NaN or inf), which would train to NaN",
                          "replace them (e.g. numpy.nan_to_num) or remove the file")
    return shape


def check_volume_file(path: str | Path, nd: int | None = None) -> tuple[int, ...]:
    """Check that a NIfTI file is complete, readable and finite: its header parses, the data it
    announces is all there (``.nii``: the file size; ``.nii.gz``: the gzip trailer, see
    :func:`_gzip_complete`) and, for floating-point data, every voxel is finite (NaN or inf
    would train to NaN). About 0.5 ms per integer file; float files are inflated once (a few ms
    per MB), so a whole dataset is checked before a run folder is created.

    Args:
        path: a ``.nii``/``.nii.gz`` file (other suffixes are left to their readers).
        nd: the spatial rank the caller needs (trailing singleton dimensions are ignored).

    Returns:
        The volume's shape.

    Raises:
        MedgenError: one line naming the file (missing, unreadable, truncated, non-finite, wrong rank).
    """
    p = Path(path)
    if not p.is_file():
        raise MedgenError(f"volume file not found: {p}")
    if not any(p.name.endswith(s) for s in VOLUME_SUFFIXES):
        return ()
    stat = p.stat()
    key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    shape = _CHECKED.get(key)
    if shape is None:  # a file checked before the run folder was made is not read again by its dataset
        shape = _CHECKED[key] = _checked_shape(p)
    dims = shape
    while nd is not None and len(dims) > nd and dims[-1] == 1:
        dims = dims[:-1]
    if nd is not None and len(dims) != nd:
        raise MedgenError(f"{p} has shape {shape}, expected a single-channel {nd}D volume",
                          f"set the configured size to {len(dims)} entries or convert the file")
    return shape


def check_volume_files(files: Sequence[str | Path], nd: int | None = None) -> None:
    """:func:`check_volume_file` for every file (what a family runs before a run folder exists),
    on a few threads; the first bad file in order is named."""
    from medgen_cli.data.filecheck import check_each

    check_each(lambda f: check_volume_file(f, nd), files)


def check_volume_tree(root: str | Path, nd: int | None = None) -> None:
    """:func:`check_volume_file` for every NIfTI file under ``root/train`` and ``root/val``
    (nothing to do when there are none: the dataset reports a missing folder itself)."""
    for split in ("train", "val"):
        folder = Path(root) / split
        if folder.is_dir():
            check_volume_files(sorted(p for p in folder.iterdir() if _is_volume(p)), nd)


class VolumeDataset:
    """Items ``{"image": Tensor[1, *size], "path": str[, "label"]}``: the deterministic transforms'
    output comes from a :class:`~medgen_cli.data.cache.VolumeCache` (filled lazily, bounded,
    sharded across DDP ranks), the random ones are drawn on every read. A file that fails to load
    later (corrupt data behind a good header) is named in one line, not a MONAI traceback."""

    def __init__(self, items: list[dict[str, Any]], prepare: Any, augment: Any, cache: Any) -> None:
        self.data = items
        self.prepare = prepare
        self.augment = augment
        self.cache = cache

    def __len__(self) -> int:
        return len(self.data)

    def _prepared(self, index: int) -> Any:
        from medgen_cli.data.cache import cached_load

        return cached_load(self.cache, index, lambda: self.prepare({"image": self.data[index]["image"]})["image"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.data[index]
        try:
            image = self._prepared(index)
            if self.augment is not None:
                image = self.augment({"image": image})["image"]
        except MedgenError:
            raise
        except Exception as exc:
            cause: BaseException = exc
            while cause.__cause__ is not None:  # MONAI wraps the reader's error
                cause = cause.__cause__
            raise MedgenError(f"cannot load {item['path']}: {type(cause).__name__}: {cause}".splitlines()[0],
                              "re-create or remove the file") from exc
        return {**item, "image": image}


def make_volume_dataset(
    files: Sequence[str | Path],
    size: tuple[int, ...],
    intensity: str = "minmax",
    flip: bool = False,
    rotate: bool = False,
    cache_rate: float = 0.0,
    num_workers: int = 0,
    labels: dict[str, int] | None = None,
    cache_max_gb: float | None = None,
) -> VolumeDataset:
    """A dataset over NIfTI (3D or 2D) or 2D PNG files, with a lazy, bounded, rank-sharded cache
    (:mod:`medgen_cli.data.cache`): nothing is loaded before the first item is read.

    Args:
        files: volume files (e.g. from :func:`list_volume_split`).
        size: output spatial size, 3 entries (3D) or 2 (2D).
        intensity: ``minmax`` | ``none`` | ``zscore`` (see module docstring).
        flip: random flips along every spatial axis (p = 0.5 each).
        rotate: random 90° rotations in the plane of the first two spatial axes (p = 0.5).
        cache_rate: fraction of this process's share of the files whose deterministic
            transforms are kept in memory once read.
        num_workers: unused (kept for callers; the cache fills as items are read).
        labels: optional ``{file key: class}``; keys may be the full path, ``split/name``,
            the name or the stem. Adds ``"label"`` (int64 scalar tensor) to each item.
        cache_max_gb: GiB of cached items per machine, split between its DDP processes
            (default :data:`~medgen_cli.data.cache.DEFAULT_CACHE_MAX_GB`).

    Returns:
        A dataset whose items are ``{"image": Tensor[1, *size], "path": str[, "label"]}``.

    Raises:
        MedgenError: no files, a bad option, or a file without a label when labels are given.
    """
    import torch

    from medgen_cli.data.cache import DEFAULT_CACHE_MAX_GB, make_cache

    del num_workers
    if not files:
        raise MedgenError("no volume files given", "check data.root (expected ROOT/train/*.nii.gz)")
    if not 0.0 <= cache_rate <= 1.0:
        raise MedgenError(f"cache_rate must be in [0, 1], not {cache_rate}")
    items: list[dict[str, Any]] = []
    for f in files:
        p = Path(f)
        check_volume_file(p, len(size))
        item: dict[str, Any] = {"image": str(p), "path": str(p)}
        if labels is not None:
            item["label"] = torch.tensor(_lookup_label(p, labels), dtype=torch.long)
        items.append(item)
    prepare, augment = _build_transforms(tuple(size), intensity, flip, rotate)
    cache = make_cache(len(items), (1, *size), cache_rate,
                       DEFAULT_CACHE_MAX_GB if cache_max_gb is None else cache_max_gb)
    return VolumeDataset(items, prepare, augment, cache)
