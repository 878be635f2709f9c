"""2D image-folder dataset for the 2D GAN families (SAGAN, StyleGAN2).

Images are read with Pillow, converted to grayscale (1 channel) or RGB (3 channels), resized to a
square ``resolution`` (bilinear, antialiased) and scaled to float32 in [0, 1]. 16-bit and float
images are scaled by their dtype range (16-bit) or their own min/max (float). The only
augmentation is an optional random horizontal flip (the user's particle-GAN experiments found
rotation, affine and colour jitter hurt).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medgen_cli.errors import MedgenError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def list_images(root: str | Path) -> list[Path]:
    """All images under ``root`` (recursive, hidden files skipped), sorted by relative path.

    Raises:
        MedgenError: ``root`` is not a folder or holds no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise MedgenError(f"image folder not found: {root}", "pass a folder of png/jpg/tif/bmp images")
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise MedgenError(f"no images found in {root}", f"expected files ending in {', '.join(IMAGE_SUFFIXES)}")
    return files


def check_image_file(path: str | Path) -> None:
    """Check that an image file can be read and holds finite values, without the cost of a
    training read: a PNG's chunks are CRC-checked up to its end (truncation and damage show, no
    decoding); other formats are decoded (a JPEG's ``verify`` checks nothing), and float images
    (32-bit TIFF) are checked for NaN/inf, which would train to NaN.

    Raises:
        MedgenError: one line naming the file.
    """
    from PIL import Image

    hint = "re-create or remove the file"
    try:
        with Image.open(path) as img:
            if img.format == "PNG":
                img.verify()
                return
            img.load()
            bad = int(np.count_nonzero(~np.isfinite(np.asarray(img)))) if img.mode == "F" else 0
    except Exception as exc:  # PIL raises many types for corrupt files
        raise MedgenError(f"cannot read image {path}: {type(exc).__name__}: {exc}".splitlines()[0], hint) from exc
    if bad:
        raise MedgenError(f"{path} holds {bad} non-finite pixel(s) (NaN or inf), which would train to NaN",
                          "replace them or remove the file")


def check_image_files(files: list[Path]) -> None:
    """:func:`check_image_file` for every file, on a few threads (the first bad one in order is
    named): what a family runs before its run folder exists."""
    from medgen_cli.data.filecheck import check_each

    check_each(check_image_file, files)


def load_image(path: str | Path, channels: int = 1, resolution: int | None = None) -> np.ndarray:
    """Read one image as float32 ``[H, W, C]`` in [0, 1].

    Args:
        path: image file.
        channels: 1 (grayscale) or 3 (RGB).
        resolution: resize to ``resolution x resolution`` when given.

    Raises:
        MedgenError: unreadable file or bad ``channels``.
    """
    from PIL import Image

    if channels not in (1, 3):
        raise MedgenError(f"channels must be 1 or 3, not {channels}")
    try:
        with Image.open(path) as img:
            img.load()
            arr = _to_unit_array(img, channels)
    except MedgenError:
        raise
    except Exception as exc:  # PIL raises many types for corrupt files
        raise MedgenError(f"cannot read image {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if resolution is not None and arr.shape[:2] != (resolution, resolution):
        planes = [
            np.asarray(Image.fromarray(arr[..., c], mode="F").resize((resolution, resolution), Image.BILINEAR))
            for c in range(arr.shape[-1])
        ]
        arr = np.stack(planes, axis=-1)
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def _to_unit_array(img: "object", channels: int) -> np.ndarray:
    """PIL image → float32 [H, W, C] in [0, 1], whatever its mode."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img).astype(np.float32)
        if mode.startswith("I;16"):
            a = a / 65535.0
        else:  # 32-bit int / float: use the image's own range
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        a = a[..., None]
        return np.repeat(a, 3, axis=-1) if channels == 3 else a
    conv = img.convert("L" if channels == 1 else "RGB")
    a = np.asarray(conv).astype(np.float32) / 255.0
    return a[..., None] if channels == 1 else a


class ImageFolderDataset:
    """Images of a folder as float32 tensors ``[C, H, W]`` in [0, 1].

    Args:
        root: folder (searched recursively) of png/jpg/jpeg/tif/tiff/bmp images.
        resolution: output height and width.
        channels: 1 (grayscale) or 3 (RGB).
        flip: random horizontal flip with probability 0.5 (uses torch's RNG, so seeding torch and
            the DataLoader's workers makes it reproducible).
    """

    def __init__(self, root: str | Path, resolution: int, channels: int = 1, flip: bool = False) -> None:
        if channels not in (1, 3):
            raise MedgenError(f"channels must be 1 or 3, not {channels}")
        if resolution < 1:
            raise MedgenError(f"resolution must be positive, not {resolution}")
        self.root = Path(root)
        self.files = list_images(self.root)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.flip = bool(flip)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> "torch.Tensor":
        import torch

        arr = load_image(self.files[index], self.channels, self.resolution)
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        if self.flip and bool(torch.rand(()) < 0.5):
            t = torch.flip(t, dims=(2,))
        return t
