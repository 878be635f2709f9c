"""Reconstruction metrics: PSNR and SSIM with data range 1.

Volumes are compared in [0, 1] (the HU window of ``medgen data make-cbct``); predictions are
clipped to [0, 1] first. SSIM is scikit-image's ``structural_similarity`` on the whole 3D volume
with ``data_range=1`` and its defaults (uniform 7³ window, K1 0.01, K2 0.03) — the published
DIF-Gaussian SSIM used a wrong data range, so only the independent reproduction's SSIM (0.899 at
10 views on LUNA16) is comparable.
"""

from __future__ import annotations

import math

import numpy as np

from medgen_cli.errors import MedgenError


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise MedgenError(f"reconstruction shape {p.shape} differs from the reference {t.shape}")
    return np.clip(p, 0.0, 1.0), t


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB with data range 1 (``inf`` for identical volumes)."""
    p, t = _pair(pred, target)
    mse = float(np.mean((p - t) ** 2))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Structural similarity (scikit-image, data range 1, 7-voxel window or smaller for tiny volumes)."""
    from skimage.metrics import structural_similarity

    p, t = _pair(pred, target)
    win = min(7, *(s if s % 2 else s - 1 for s in p.shape))
    return float(structural_similarity(t, p, data_range=1.0, win_size=win))


def recon_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``{"psnr": dB, "ssim": value}`` of one volume pair."""
    return {"psnr": psnr(pred, target), "ssim": ssim(pred, target)}
