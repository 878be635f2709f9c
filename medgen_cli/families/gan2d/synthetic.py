"""Synthetic blob images (a stand-in for particle images) for tests and demos."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def blob_images(n: int, resolution: int, channels: int = 1, seed: int = 0, max_blobs: int = 3) -> np.ndarray:
    """``[N, H, W, C]`` float32 in [0, 1]: 1–``max_blobs`` Gaussian blobs on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:resolution, 0:resolution].astype(np.float32)
    out = np.zeros((n, resolution, resolution, channels), dtype=np.float32)
    for i in range(n):
        for _ in range(int(rng.integers(1, max_blobs + 1))):
            cy, cx = rng.uniform(0.2, 0.8, size=2) * resolution
            sigma = rng.uniform(0.06, 0.15) * resolution
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
            colour = rng.uniform(0.5, 1.0, size=channels).astype(np.float32)
            out[i] += blob[..., None] * colour
    return np.clip(out, 0.0, 1.0)


def write_blob_folder(root: str | Path, n: int, resolution: int, channels: int = 1, seed: int = 0) -> Path:
    """Write :func:`blob_images` as ``blob_0000.png`` … into ``root`` (created) and return it."""
    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(blob_images(n, resolution, channels, seed)):
        u8 = (img * 255 + 0.5).astype(np.uint8)
        pil = Image.fromarray(u8[..., 0], mode="L") if channels == 1 else Image.fromarray(u8, mode="RGB")
        pil.save(root / f"blob_{i:04d}.png")
    return root
