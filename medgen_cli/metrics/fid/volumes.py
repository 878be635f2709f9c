"""2.5D FID inputs: slices of NIfTI volumes along the three axes, as MAISI reports it.

Each volume is reoriented to the closest canonical (RAS) orientation, so array axes 0, 1, 2 give
sagittal, coronal and axial slices. Intensities are mapped to [0, 1] per volume:

* default: min–max of the volume (a constant volume becomes all zeros);
* ``window=(low, high)``: clip to the window, then ``(v − low) / (high − low)`` — e.g. CT
  ``(-1000, 1024)`` HU as in the DIF-Gaussian data, or ``(0, 1)`` for data already in [0, 1].
  Data that fill under 1% of the window's width (``[0, 1]`` data in a HU window) are warned about.

A volume with NaN/inf voxels is refused (one line naming the file and the count).

Each slice (1 channel, repeated to RGB) goes through pytorch-fid's InceptionV3, which resizes it
to 299×299; one FID per plane is computed from all slices of all volumes and the reported FID is
their mean. ``center_fraction`` keeps only the central fraction of slice positions along each
axis (edge slices are often empty background). Volumes of different shapes are allowed (every
slice is resized to 299×299, aspect ratio not kept); medgen warns when shapes differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from medgen_cli.errors import MedgenError

PLANES = ("sagittal", "coronal", "axial")


def load_volume(path: Path) -> np.ndarray:
    """A 3D float32 array in closest-canonical orientation (a trailing singleton 4th axis is dropped).

    Raises:
        MedgenError: unreadable file or not 3D (named in the message).
    """
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        vol = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise MedgenError(f"cannot read NIfTI {path}: {type(exc).__name__}: {exc}".splitlines()[0],
                          "remove or replace the file") from exc
    while vol.ndim > 3 and vol.shape[-1] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3:
        raise MedgenError(f"{path} is not a 3D volume (shape {vol.shape})", "2.5D FID needs 3D NIfTI volumes")
    return vol


#: Below this share of the --window's width, the data hardly use the window (e.g. [0, 1] data in a HU window).
WINDOW_SHARE_WARNING = 0.01


def check_finite(vol: np.ndarray, path: Path) -> None:
    """Refuse a volume with NaN/inf voxels: its slices would become meaningless features.

    Raises:
        MedgenError: naming the file and the count.
    """
    bad = int(vol.size - np.count_nonzero(np.isfinite(vol)))
    if bad:
        raise MedgenError(f"{path} has {bad} non-finite voxel(s) (NaN/inf): FID on it would be meaningless",
                          "fix or remove the volume (medgen viz slices --json shows the counts per file)")


def window_warning(value_range: tuple[float, float] | None, window: tuple[float, float] | None,
                   label: str) -> str | None:
    """A warning when the data span under :data:`WINDOW_SHARE_WARNING` of the window's width
    (nearly every voxel then maps to one grey level, and FID says little)."""
    if value_range is None or window is None:
        return None
    (lo, hi), (low, high) = value_range, window
    share = (min(hi, high) - max(lo, low)) / (high - low)
    if share >= WINDOW_SHARE_WARNING:
        return None
    return (f"{label}: the volumes' values [{lo:.4g}, {hi:.4g}] cover {100 * max(share, 0.0):.2g}% of "
            f"--window={low:g},{high:g}, so their slices are nearly uniform and FID says little "
            "(the window is for HU data; leave it out for per-volume min-max, or give the data's own range)")


def normalize(vol: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Map intensities to [0, 1] (see the module docstring)."""
    vol = np.nan_to_num(vol.astype(np.float32))
    if window is not None:
        low, high = window
        if not high > low:
            raise MedgenError(f"intensity window {window} is empty", "give --window LOW,HIGH with LOW < HIGH")
        return (np.clip(vol, low, high) - low) / (high - low)
    low, high = float(vol.min()), float(vol.max())
    if high <= low:
        return np.zeros_like(vol)
    return (vol - low) / (high - low)


def central_indices(n: int, center_fraction: float) -> range:
    """The central ``round(n · fraction)`` (at least one) slice positions of ``n``."""
    if not 0 < center_fraction <= 1:
        raise MedgenError(f"--center-fraction must be in (0, 1], got {center_fraction}")
    k = max(1, int(round(n * center_fraction)))
    start = (n - k) // 2
    return range(start, start + k)


def plane_slices(vol: np.ndarray, axis: int, center_fraction: float = 1.0) -> np.ndarray:
    """Slices along ``axis`` as ``[S, 1, H, W]`` float32."""
    idx = central_indices(vol.shape[axis], center_fraction)
    stack = np.moveaxis(vol, axis, 0)[idx.start:idx.stop]
    return np.ascontiguousarray(stack[:, None], dtype=np.float32)


def volume_features(files: list[Path], get_extractor: Callable[[], Any], center_fraction: float = 1.0,
                    window: tuple[float, float] | None = None, batch_size: int = 50,
                    on_volume: Callable[[int], None] | None = None
                    ) -> tuple[dict[str, np.ndarray], set[tuple[int, ...]], tuple[float, float]]:
    """Per-plane slice features of NIfTI volumes.

    Args:
        files: NIfTI paths.
        get_extractor: returns the FeatureExtractor to use.
        center_fraction: central fraction of slice positions kept along each axis.
        window: fixed intensity window, or None for per-volume min–max.
        batch_size: slices per forward pass.
        on_volume: called with 1 after each volume.

    Returns:
        ({plane: float64 features ``[S_total, dims]``}, set of volume shapes seen, (min, max) of
        all voxels before the intensity mapping).

    Raises:
        MedgenError: an unreadable or non-3D file, or one with non-finite voxels.
    """
    import torch

    extractor = get_extractor()
    parts: dict[str, list[np.ndarray]] = {p: [] for p in PLANES}
    shapes: set[tuple[int, ...]] = set()
    low, high = np.inf, -np.inf
    for path in files:
        raw = load_volume(path)
        check_finite(raw, path)
        low, high = min(low, float(raw.min())), max(high, float(raw.max()))
        vol = normalize(raw, window)
        shapes.add(tuple(vol.shape))
        for axis, plane in enumerate(PLANES):
            slices = torch.from_numpy(plane_slices(vol, axis, center_fraction))
            parts[plane].append(extractor.features(slices, batch_size))
        if on_volume is not None:
            on_volume(1)
    return {p: np.concatenate(v, axis=0) for p, v in parts.items()}, shapes, (low, high)
