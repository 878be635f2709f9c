"""File-writing helpers every command uses: temporary name + fsync + rename, no silent overwrite."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from medgen_cli.errors import MedgenError

if TYPE_CHECKING:
    import numpy as np


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_TMP_COUNTER = itertools.count()


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target`` (the caller creates the file there); on success
    fsync it and rename it to ``target``.

    ``fsync=False`` skips the flush to disk (faster for many small outputs): the rename still
    guarantees no reader sees a half-written file, but a power loss may lose the newest files.

    On any exception the temporary file is removed and ``target`` is left untouched, so a reader
    never sees a half-written file. ``suffix`` (default: the target's full suffix, e.g. ``.nii.gz``)
    is kept so libraries that infer the format from the extension still work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes) or ".tmp"
    # Unique per process and call without creating the file first (mkstemp's extra create/close
    # costs about as much as writing a small compressed volume, and convert-h5 writes thousands).
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{next(_TMP_COUNTER)}.part{suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
        if fsync:
            fsync_dir(target.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(target)  # write() errors (a full disk) carry no name: say which output
        raise


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is "no space left on device" (or a full quota)."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(exc: OSError, where: str | Path, then: str) -> MedgenError:
    """One line for a full disk: the file being written, how much is free, and what to do next.

    Args:
        exc: the ``ENOSPC`` error.
        where: the output folder (named when the error carries no file name).
        then: what to do after freeing space (e.g. the resume command).
    """
    import shutil

    path = Path(exc.filename) if exc.filename else Path(where)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = f"{shutil.disk_usage(probe).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return MedgenError(f"disk full while writing {path} ({free})",
                       f"free space on the disk holding {where} or choose another output folder; {then}")


def check_writable(path: str | Path, overwrite: bool) -> Path:
    """Refuse to replace an existing output unless ``overwrite``.

    Raises:
        MedgenError: ``path`` exists and ``overwrite`` is False.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise MedgenError(f"{p} already exists", "pass --overwrite to replace it, or choose another output path")
    return p


def save_nifti(array: "object", path: str | Path, affine: "object | None" = None, overwrite: bool = False) -> Path:
    """Write a float32 NIfTI (``.nii`` or ``.nii.gz``) atomically.

    Args:
        array: a 2D/3D (or 4D) numpy array.
        path: output path.
        affine: 4x4 voxel-to-world matrix (identity when None).
        overwrite: allow replacing an existing file.
    """
    import nibabel as nib
    import numpy as np

    p = check_writable(path, overwrite)
    arr = np.asarray(array, dtype=np.float32)
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(arr, aff)
    img.header.set_data_dtype(np.float32)
    img.header.set_xyzt_units("mm")
    with atomic_path(p) as tmp:
        nib.save(img, str(tmp))
    return p


def load_nifti(path: str | Path) -> tuple["object", "object"]:
    """Read a NIfTI as (float32 array, affine).

    Raises:
        MedgenError: missing or unreadable file (named in the message).
    """
    import nibabel as nib
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise MedgenError(f"NIfTI file not found: {p}")
    try:
        img = nib.load(str(p))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise MedgenError(f"cannot read NIfTI {p}: {type(exc).__name__}: {exc}".splitlines()[0],
                          "check that the file is a complete .nii/.nii.gz") from exc
    return data, np.asarray(img.affine)


def load_any_volume(path: Path) -> tuple["np.ndarray", "np.ndarray"]:
    """(array, affine) of a NIfTI or ``.npy`` file (``.npy``: identity affine).

    Raises:
        MedgenError: missing or unreadable file.
    """
    import numpy as np

    if path.name.lower().endswith(".npy"):
        if not path.is_file():
            raise MedgenError(f"file not found: {path}")
        try:
            return np.load(path, allow_pickle=False).astype(np.float32), np.eye(4)
        except (OSError, ValueError) as exc:
            raise MedgenError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    return load_nifti(path)
