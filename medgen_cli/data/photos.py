"""Two real photographs as 8-bit grayscale arrays (scikit-image's ``coins`` and
``hubble_deep_field``): a data set no generator made, for tests and benchmarks that need images
as different as a GAN's early samples and its data (FID bounds, the 2D GAN benchmarks)."""

from __future__ import annotations

import numpy as np


def photo_sources() -> list[np.ndarray]:
    """``[coins, hubble]`` as ``uint8`` arrays (Hubble: luminance of the RGB image, rounded)."""
    import skimage.data
    from skimage.color import rgb2gray

    hubble = (rgb2gray(skimage.data.hubble_deep_field()) * 255 + 0.5).astype(np.uint8)
    return [skimage.data.coins(), hubble]
