"""Fast ``.nii.gz`` writer for sparse float32 volumes (what convert-h5 writes).

Voxelized point clouds are mostly zeros, and gzip-compressing 1 MB of float32 zeros costs more
than voxelizing the cloud. This writer builds the standard NIfTI-1 byte stream (nibabel's header,
``vox_offset`` 352, float32 data in Fortran order) and deflates it in chunks the way ``pigz``
does: every chunk is compressed independently and ended with a full flush (so chunks never refer
back to each other), and the compressed form of an all-zero chunk is computed once and reused.
The result is one ordinary gzip member that nibabel, ITK and ``gunzip`` read like any other.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from medgen_cli.io import atomic_path, check_writable

_CHUNK = 1 << 14  # 16 KiB: fine enough to find zero regions, coarse enough to keep Python overhead low
_ZERO_RUNS: dict[tuple[int, int], bytes] = {}


def _deflate(data: bytes | memoryview, level: int, finish: bool = False) -> bytes:
    # Raw deflate (wbits=-15); Z_RLE is fast on long runs of identical bytes and compresses well here.
    co = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    return co.compress(data) + co.flush(zlib.Z_FINISH if finish else zlib.Z_FULL_FLUSH)


def _zero_run(nbytes: int, level: int) -> bytes:
    key = (nbytes, level)
    if key not in _ZERO_RUNS:
        _ZERO_RUNS[key] = _deflate(bytes(nbytes), level)
    return _ZERO_RUNS[key]


def gzip_sparse(raw: bytes, level: int = 1) -> bytes:
    """gzip ``raw``, reusing the compressed form of all-zero 16 KiB chunks."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    n_full = len(buf) // _CHUNK
    nonzero = buf[: n_full * _CHUNK].reshape(n_full, _CHUNK).any(axis=1).tolist()
    parts = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"]  # gzip header: no name, mtime 0, OS unknown
    view = memoryview(raw)
    i = 0
    while i < n_full:
        j = i
        while j < n_full and nonzero[j] == nonzero[i]:
            j += 1
        segment = (j - i) * _CHUNK
        parts.append(_deflate(view[i * _CHUNK: j * _CHUNK], level) if nonzero[i] else _zero_run(segment, level))
        i = j
    parts.append(_deflate(view[n_full * _CHUNK:], level, finish=True))  # tail + final block
    parts.append(struct.pack("<II", zlib.crc32(raw) & 0xFFFFFFFF, len(raw) & 0xFFFFFFFF))
    return b"".join(parts)


def nifti_bytes(volume: np.ndarray, affine: np.ndarray) -> bytes:
    """The uncompressed single-file NIfTI-1 stream of a float32 volume (header as nibabel writes it)."""
    import nibabel as nib

    vol = np.asarray(volume, dtype=np.float32)
    img = nib.Nifti1Image(vol, np.asarray(affine, dtype=np.float64))
    hdr = img.header
    hdr.set_data_dtype(np.float32)
    hdr.set_xyzt_units("mm")
    hdr["vox_offset"] = 352
    hdr["scl_slope"], hdr["scl_inter"] = np.nan, np.nan  # "no scaling", as nibabel writes float data
    return hdr.binaryblock + b"\x00\x00\x00\x00" + vol.tobytes(order="F")


def write_nifti_gz(volume: np.ndarray, path: str | Path, affine: np.ndarray, overwrite: bool = False,
                   level: int = 1, fsync: bool = False) -> Path:
    """Write a float32 ``.nii.gz`` atomically (temporary name + rename).

    Args:
        volume: 3D (or 2D) array.
        path: output ``.nii.gz``.
        affine: 4x4 voxel-to-world matrix.
        overwrite: allow replacing an existing file.
        level: zlib level (1 = fast).
        fsync: fsync the file before the rename (durable across power loss, slower); the rename
            alone already guarantees no reader ever sees a half-written file.
    """
    p = check_writable(path, overwrite)
    data = gzip_sparse(nifti_bytes(volume, affine), level)
    if fsync:
        with atomic_path(p) as tmp:
            tmp.write_bytes(data)
        return p
    tmp = p.with_name(f".{p.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p
