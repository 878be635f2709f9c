"""Labelled frame strips and GIFs of interpolations (``preview/strip.png``, ``interpolation.gif``).

Frames are zoomed by the same integer nearest-neighbour factor as the sample grids (a 16-px frame
becomes 128 px), each gets a caption band with its label (``t=0.43``) below it, and frames are set
apart by grey separators that stay visible on dark images. 2D frames and the middle slices of
volumes go through the same code, so every strip and GIF looks alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from medgen_cli.io import atomic_path

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: Smallest longer side of a zoomed frame, in pixels (as the sample grids' ``min_tile``).
MIN_TILE = 128
CAPTION_PX = 18
SEPARATOR_PX = 4
SEPARATOR_GREY = 128


def zoom_factor(height: int, width: int, min_tile: int = MIN_TILE) -> int:
    """The smallest integer factor that makes a frame at least ``min_tile`` px on its longer side."""
    return max(1, -(-int(min_tile) // max(height, width, 1)))


def _frames_u8(frames: np.ndarray) -> np.ndarray:
    """``[K, H, W]``/``[K, C, H, W]``/``[K, H, W, C]`` in [0, 1] → ``[K, H, W, C]`` uint8 (C = 1 or 3)."""
    arr = np.asarray(frames, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.ndim == 3:
        arr = arr[..., None]
    return (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def labelled_frames(frames: np.ndarray, labels: Sequence[str], min_tile: int = MIN_TILE) -> list[PILImage.Image]:
    """Each frame zoomed (see :func:`zoom_factor`) above a black caption band with its label."""
    from PIL import Image, ImageDraw, ImageFont

    u8 = _frames_u8(frames)
    k = zoom_factor(u8.shape[1], u8.shape[2], min_tile)
    u8 = u8.repeat(k, axis=1).repeat(k, axis=2)
    mode = "L" if u8.shape[-1] == 1 else "RGB"
    font = ImageFont.load_default()
    out = []
    for frame, label in zip(u8, labels):
        tile = Image.new(mode, (frame.shape[1], frame.shape[0] + CAPTION_PX), 0)
        tile.paste(Image.fromarray(frame[..., 0] if mode == "L" else frame, mode=mode), (0, 0))
        draw = ImageDraw.Draw(tile)
        width = draw.textlength(label, font=font)
        draw.text(((frame.shape[1] - width) / 2, frame.shape[0] + 3), label, fill=255 if mode == "L" else (255,) * 3,
                  font=font)
        out.append(tile)
    return out


def save_strip(frames: np.ndarray, labels: Sequence[str], path: str | Path, min_tile: int = MIN_TILE) -> Path:
    """The labelled frames side by side, grey separators between them, as one PNG."""
    from PIL import Image

    tiles = labelled_frames(frames, labels, min_tile)
    w, h = tiles[0].size
    strip = Image.new(tiles[0].mode, (len(tiles) * w + (len(tiles) - 1) * SEPARATOR_PX, h),
                      SEPARATOR_GREY if tiles[0].mode == "L" else (SEPARATOR_GREY,) * 3)
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * (w + SEPARATOR_PX), 0))
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        strip.save(tmp, format="PNG")
    return path


def save_gif(frames: np.ndarray, labels: Sequence[str], path: str | Path, min_tile: int = MIN_TILE,
             duration_ms: int = 120) -> Path:
    """The labelled frames as a looping GIF."""
    tiles = labelled_frames(frames, labels, min_tile)
    path = Path(path)
    with atomic_path(path, suffix=".gif") as tmp:
        tiles[0].save(tmp, format="GIF", save_all=True, append_images=tiles[1:], duration=duration_ms, loop=0)
    return path


def t_labels(ts: Sequence[float | None]) -> list[str]:
    """``t=0.00`` … for interpolation frames (``frame i`` where a frame has no ``t``)."""
    return [f"t={t:.2f}" if t is not None else f"frame {i}" for i, t in enumerate(ts)]
