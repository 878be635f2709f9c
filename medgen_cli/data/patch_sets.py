"""Small grayscale patch sets for the 2D GAN benchmarks, cut from scikit-image's package data
(:mod:`medgen_cli.data.photos`, no download): for each set a TRAIN split to train on and a REF split,
disjoint from it, for the real-vs-real FID floor.

=============  ==========================================  =====================================
set            sources (as 8-bit grayscale)                 how a patch is cut
=============  ==========================================  =====================================
coins_hubble   ``coins`` 303×384, ``hubble_deep_field``     random 64² crop at full resolution;
               872×1000 (luminance)                         left half → TRAIN, right half → REF
retina         ``retina`` 1411² fundus (luminance),         random 64² crop lying wholly inside
               box-downscaled 4× to 352²                    the fundus (no pixel below 10); top
                                                            half → TRAIN, bottom half → REF
textures       ``grass``, ``gravel``, ``brick``, 512² each  random 64² crop at full resolution;
                                                            left half → TRAIN, right half → REF
faces          ``lfw_subset()``'s 100 faces, 25² each       random 22² crop of a face, bicubic
                                                            to 64²; faces 0–49 → TRAIN, 50–99 → REF
=============  ==========================================  =====================================

Each split holds ``n`` patches (300 by default), shared as evenly as possible between the set's
sources (faces: each face used ``n / 50`` times, at different offsets). Crops are drawn by
``numpy.random.default_rng(seed)``, one generator per set, TRAIN first: a set is the same whether
it is built alone or with the others, and ``coins_hubble`` is pixel for pixel the set the earlier
2D GAN measurements used. Patches of one split may overlap each other (like crops of the same
micrographs); no pixel of a REF patch is in any TRAIN patch. ``cell`` and ``immunohistochemistry``
are refused (:data:`medgen_cli.data.photos.RESERVED`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgen_cli.data.photos import RESERVED, source

SPLITS = ("train", "ref")


@dataclass(frozen=True)
class SetSpec:
    """How one set is cut.

    Attributes:
        sources: :func:`medgen_cli.data.photos.source` names.
        split: ``columns`` (left half → TRAIN), ``rows`` (top half → TRAIN) or ``items`` (first half
            of a stack of images → TRAIN).
        downscale: box-average factor applied to each source first.
        crop: crop side in (downscaled) source pixels, resized to the patch size; ``None``: the patch size.
        min_level: every pixel of a crop must be at least this (the retina's black surround is 0).
    """

    sources: tuple[str, ...]
    split: str
    downscale: int = 1
    crop: int | None = None
    min_level: int = 0


SETS: dict[str, SetSpec] = {
    "coins_hubble": SetSpec(("coins", "hubble_deep_field"), "columns"),
    "retina": SetSpec(("retina",), "rows", downscale=4, min_level=10),
    "textures": SetSpec(("grass", "gravel", "brick"), "columns"),
    "faces": SetSpec(("lfw_faces",), "items", crop=22),
}


@dataclass(frozen=True)
class Patch:
    """One patch and where it came from.

    Attributes:
        image: ``uint8`` array ``(size, size)``.
        source: the photo source's name.
        item: index in a stack source (``-1`` for a single image).
        box: ``(y, x, h, w)`` in the source's own pixels (before any downscaling).
    """

    image: np.ndarray
    source: str
    item: int
    box: tuple[int, int, int, int]


def check_name(name: str) -> SetSpec:
    """The spec of set ``name``; raises ``ValueError`` for a reserved or unknown name."""
    if name in RESERVED:
        raise ValueError(f"{name!r} is reserved for the team's checks; medgen never builds a set from it")
    if name not in SETS:
        raise ValueError(f"unknown set {name!r}; known: {', '.join(SETS)}")
    return SETS[name]


def _downscale(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    h, w = (s // factor * factor for s in image.shape)
    blocks = image[:h, :w].reshape(h // factor, factor, w // factor, factor).astype(np.float64)
    return (blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8)


def _resize(patch: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if patch.shape == (size, size):
        return np.ascontiguousarray(patch)
    return np.asarray(Image.fromarray(np.ascontiguousarray(patch)).resize((size, size), Image.BICUBIC))


def _corners(part: np.ndarray, count: int, crop: int, min_level: int,
             rng: np.random.Generator) -> list[tuple[int, int]]:
    """``count`` random crop corners in ``part`` whose crops have no pixel below ``min_level``."""
    h, w = part.shape
    if h < crop or w < crop:
        raise ValueError(f"a {crop}² crop does not fit in a {h}×{w} half image")
    found: list[tuple[int, int]] = []
    for _ in range(1000):
        want = count - len(found)
        if want == 0:
            return found
        ys, xs = rng.integers(0, h - crop + 1, want), rng.integers(0, w - crop + 1, want)
        found += [(int(y), int(x)) for y, x in zip(ys, xs) if part[y:y + crop, x:x + crop].min() >= min_level]
    raise ValueError(f"could not place {count} crops of {crop}² with every pixel >= {min_level}")


def _image_patches(name: str, spec: SetSpec, split: str, count: int, size: int,
                   rng: np.random.Generator) -> list[Patch]:
    image = _downscale(source(name), spec.downscale)
    crop, f = spec.crop or size, spec.downscale
    h, w = image.shape
    if spec.split == "columns":
        oy, ox = 0, (0 if split == "train" else w // 2)
        part = image[:, :w // 2] if split == "train" else image[:, w // 2:]
    else:
        oy, ox = (0 if split == "train" else h // 2), 0
        part = image[:h // 2] if split == "train" else image[h // 2:]
    return [Patch(_resize(part[y:y + crop, x:x + crop], size), name, -1, ((oy + y) * f, (ox + x) * f, crop * f, crop * f))
            for y, x in _corners(part, count, crop, spec.min_level, rng)]


def _stack_patches(name: str, spec: SetSpec, split: str, count: int, size: int,
                   rng: np.random.Generator) -> list[Patch]:
    stack = source(name)
    half = len(stack) // 2
    items = range(half) if split == "train" else range(half, len(stack))
    crop = spec.crop or size
    h, w = stack.shape[1:]
    patches = []
    for k in range(count):
        i = items[k % len(items)]
        y, x = (int(v) for v in rng.integers(0, [h - crop + 1, w - crop + 1]))
        patches.append(Patch(_resize(stack[i, y:y + crop, x:x + crop], size), name, i, (y, x, crop, crop)))
    return patches


def build_set(name: str, n: int = 300, size: int = 64, seed: int = 0) -> dict[str, list[Patch]]:
    """The ``train`` and ``ref`` splits of set ``name``, ``n`` patches of ``size``² each.

    Raises:
        ValueError: ``name`` is reserved or unknown, or a crop does not fit.
    """
    spec = check_name(name)
    rng = np.random.default_rng(seed)
    k = len(spec.sources)
    counts = [n // k + (i < n % k) for i in range(k)]
    cut = _stack_patches if spec.split == "items" else _image_patches
    return {split: [p for src, count in zip(spec.sources, counts) for p in cut(src, spec, split, count, size, rng)]
            for split in SPLITS}


def write_set(name: str, out: Path, n: int = 300, size: int = 64, seed: int = 0) -> dict[str, Path]:
    """Write set ``name`` as ``out/train/train_0000.png``…, ``out/ref/ref_0000.png``… (8-bit
    grayscale) and ``out/set.json`` (sources, sizes, seed, each patch's origin); returns the split folders."""
    from PIL import Image

    splits = build_set(name, n, size, seed)
    spec = SETS[name]
    folders = {split: Path(out) / split for split in SPLITS}
    record: dict = {"set": name, "sources": list(spec.sources), "split_rule": spec.split, "downscale": spec.downscale,
                    "crop": spec.crop or size, "size": size, "n": n, "seed": seed, "patches": {}}
    for split, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"{split}_*.png"):
            old.unlink()
        for k, p in enumerate(splits[split]):
            Image.fromarray(p.image, mode="L").save(folder / f"{split}_{k:04d}.png")
        record["patches"][split] = [[p.source, p.item, *p.box] for p in splits[split]]
    (Path(out) / "set.json").write_text(json.dumps(record) + "\n")
    return folders
