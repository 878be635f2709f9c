"""Files written by ``medgen sample`` / ``medgen interpolate`` for 2D GANs, and latent paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medgen_cli.families.latents import seeded_normal
from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path, check_writable


def seed_latents(seed: int, n: int, dim: int) -> torch.Tensor:
    """``[n, dim]`` latents, row ``i`` drawn from seed ``seed + i`` (StyleGAN's per-image seeds):
    an image depends on its own seed only, not on how many were generated with it."""
    return seeded_normal((dim,), range(seed, seed + n))


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] → float images in [0, 1]."""
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def _png(image: np.ndarray, path: Path) -> None:
    """One ``[C, H, W]`` image in [0, 1] as an 8-bit PNG (atomic)."""
    from PIL import Image

    u8 = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    pil = Image.fromarray(u8[0], mode="L") if u8.shape[0] == 1 else Image.fromarray(u8.transpose(1, 2, 0), mode="RGB")
    with atomic_path(path, suffix=".png") as tmp:
        pil.save(tmp, format="PNG")


def _npy(array: np.ndarray, path: Path) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array.astype(np.float32))


def _grid(images: np.ndarray, path: Path, ncols: int | None = None) -> None:
    from medgen_cli.viz.slices import save_image_grid

    save_image_grid(images, path, ncols=ncols)


def _check_outputs(out: Path, names: list[str], overwrite: bool) -> None:
    """Refuse before writing anything if any output exists and ``overwrite`` is off."""
    for name in names:
        check_writable(out / name, overwrite)


def write_samples(images: np.ndarray, out: Path, overwrite: bool = False) -> list[Path]:
    """``grid.png``, ``sample_0000.png`` … and ``samples.npy`` (``[N, C, H, W]`` float32 in [0, 1]).

    Raises:
        MedgenError: an output exists and ``overwrite`` is False.
    """
    out = Path(out)
    names = ["grid.png", "samples.npy"] + [f"sample_{i:04d}.png" for i in range(len(images))]
    _check_outputs(out, names, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    _grid(images, out / "grid.png")
    _npy(images, out / "samples.npy")
    for i, image in enumerate(images):
        _png(image, out / f"sample_{i:04d}.png")
    return [out / n for n in names]


def write_interpolation(frames: np.ndarray, out: Path, overwrite: bool = False, duration_ms: int = 120) -> list[Path]:
    """``strip.png`` (frames in one row), ``interpolation.gif`` (looping), ``frame_000.png`` …
    and ``frames.npy``.

    Raises:
        MedgenError: an output exists and ``overwrite`` is False.
    """
    from PIL import Image

    out = Path(out)
    names = ["strip.png", "interpolation.gif", "frames.npy"] + [f"frame_{i:03d}.png" for i in range(len(frames))]
    _check_outputs(out, names, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    _grid(frames, out / "strip.png", ncols=len(frames))
    _npy(frames, out / "frames.npy")
    for i, frame in enumerate(frames):
        _png(frame, out / f"frame_{i:03d}.png")
    u8 = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
    mode = "L" if u8.shape[1] == 1 else "RGB"
    pil = [Image.fromarray(f[0] if mode == "L" else f.transpose(1, 2, 0), mode=mode) for f in u8]
    with atomic_path(out / "interpolation.gif", suffix=".gif") as tmp:
        pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:], duration=duration_ms, loop=0)
    return [out / n for n in names]


def reject_unsupported(opts: object, family: str, allow_truncation: bool) -> None:
    """Raise for ``medgen sample`` options a 2D GAN cannot honour (diffusion/conditional/inputs)."""
    checks = {
        "--scheduler": getattr(opts, "scheduler", None) is not None,
        # InterpolateOptions.steps is the frame count; only SampleOptions.steps means sampler steps.
        "--steps": hasattr(opts, "num") and getattr(opts, "steps", None) is not None,
        "--sample-steps": getattr(opts, "sample_steps", None) is not None,
        "--guidance-scale": getattr(opts, "guidance_scale", None) is not None,
        "--class-label": getattr(opts, "class_label", None) is not None,
        "--input": getattr(opts, "input", None) is not None,
        "--truncation": not allow_truncation and float(getattr(opts, "truncation", 1.0)) != 1.0,
    }
    bad = [flag for flag, used in checks.items() if used]
    if bad:
        raise MedgenError(f"{family} runs do not support {', '.join(bad)}",
                          "2D GANs write PNG grids, PNGs and .npy; --truncation is for stylegan2")
    fmt = getattr(opts, "format", "png")
    if fmt not in ("png", "npy", "nifti"):
        raise MedgenError(f"{family} runs cannot write --format {fmt}",
                          "2D GAN samples are always written as PNGs plus one .npy")
