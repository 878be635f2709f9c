"""Real photographs that ship with scikit-image, as 8-bit grayscale arrays: data sets no generator
made, for tests and benchmarks that need images as different as a GAN's early samples and its data
(FID bounds, the 2D GAN benchmarks, :mod:`medgen_cli.data.patch_sets`).

All go through :func:`gray_uint8`, the one grayscale conversion. ``cell`` and
``immunohistochemistry`` are never offered: the team checks the 2D GANs on sets nobody tuned on.
"""

from __future__ import annotations

import numpy as np

#: scikit-image images that no medgen data set, test or benchmark may use (held out for the team's checks).
RESERVED = frozenset({"cell", "immunohistochemistry", "ihc"})


def gray_uint8(image: np.ndarray) -> np.ndarray:
    """``image`` as ``uint8`` grayscale: RGB(A) → luminance (scikit-image's ``rgb2gray``), floats
    in [0, 1] → ×255 rounded; ``uint8`` grayscale is returned as it is."""
    from skimage.color import rgb2gray

    if image.ndim == 3:
        image = rgb2gray(image[..., :3])
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


#: the sources, all in scikit-image's package data (no download); ``lfw_faces`` is the first 100
#: images of ``lfw_subset()`` (25×25 faces; the other 100 are not faces).
SOURCES = ("coins", "hubble_deep_field", "retina", "grass", "gravel", "brick", "lfw_faces")


def _load(name: str) -> np.ndarray:
    import skimage.data

    if name == "lfw_faces":
        return skimage.data.lfw_subset()[:100]
    return getattr(skimage.data, name)()


def source(name: str) -> np.ndarray:
    """The named source as ``uint8`` grayscale (``(H, W)``, or ``(N, H, W)`` for a stack).

    Raises:
        ValueError: ``name`` is reserved (``cell``, ``immunohistochemistry``) or unknown.
    """
    if name in RESERVED:
        raise ValueError(f"scikit-image's {name!r} is reserved for the team's checks; medgen never uses it")
    if name not in SOURCES:
        raise ValueError(f"unknown photo source {name!r}; known: {', '.join(SOURCES)}")
    raw = np.asarray(_load(name))
    if raw.ndim == 3 and raw.shape[-1] not in (3, 4):  # a stack of grayscale images
        return np.stack([gray_uint8(im) for im in raw])
    return gray_uint8(raw)


def photo_sources() -> list[np.ndarray]:
    """``[coins, hubble]`` as ``uint8`` arrays (Hubble: luminance of the RGB image, rounded)."""
    return [source("coins"), source("hubble_deep_field")]
