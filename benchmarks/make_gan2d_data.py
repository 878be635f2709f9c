"""Two disjoint sets of 64×64 grayscale patches from scikit-image's ``coins`` and
``hubble_deep_field`` (both ship with scikit-image; as 8-bit grayscale by
``medgen_cli.data.photos``, the one conversion tests and benchmarks share): TRAIN to train on,
REF for the real-vs-real FID floor.

Each source image is cut in two halves (left → TRAIN, right → REF), so no pixel of a REF patch is
in any TRAIN patch; within a half, patch corners are drawn at random (patches of one set may
overlap each other, like crops of the same micrographs). Half of each set comes from each image.

    python -m benchmarks.make_gan2d_data OUT [--n 300] [--size 64] [--seed 0]

writes ``OUT/train/*.png`` and ``OUT/ref/*.png`` (8-bit grayscale).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def patches(image: np.ndarray, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = image.shape
    ys = rng.integers(0, h - size + 1, n)
    xs = rng.integers(0, w - size + 1, n)
    return [image[y:y + size, x:x + size] for y, x in zip(ys, xs)]


def make(out: Path, n: int = 300, size: int = 64, seed: int = 0) -> dict[str, Path]:
    """Write ``n`` TRAIN and ``n`` REF patches; returns the two folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folders = {"train": out / "train", "ref": out / "ref"}
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)
    from medgen_cli.data.photos import photo_sources

    imgs = photo_sources()
    counts = [n // len(imgs) + (i < n % len(imgs)) for i in range(len(imgs))]
    for split, folder in folders.items():
        k = 0
        for img, count in zip(imgs, counts):
            half = img.shape[1] // 2
            part = img[:, :half] if split == "train" else img[:, half:]
            for p in patches(part, count, size, rng):
                Image.fromarray(np.ascontiguousarray(p), mode="L").save(folder / f"{split}_{k:04d}.png")
                k += 1
    return folders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=300, help="patches per set")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    folders = make(args.out, args.n, args.size, args.seed)
    print(" ".join(f"{k}={v}" for k, v in folders.items()))


if __name__ == "__main__":
    main()
