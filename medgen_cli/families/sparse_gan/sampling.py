"""Sampling and latent interpolation for the sparse GAN: dense NIfTI (data's affine), npy, points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen_cli.families.latents import interpolation_path
from medgen_cli.errors import MedgenError
from medgen_cli.io import check_writable

FORMATS = {"nifti": ".nii.gz", "npy": ".npy", "points": ".ply"}


def latents(seed: int, n: int, dim: int) -> torch.Tensor:
    """``n`` latent vectors from ``seed``; row ``i`` does not depend on ``n`` (drawn row by row,
    since torch draws a block of normals in a different order than a single row)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randn(1, dim, generator=gen) for _ in range(n)])


@torch.no_grad()
def generate_volumes(family: Any, gen: torch.nn.Module, n: int, seed: int, device: Any,
                     z: torch.Tensor | None = None, batch_size: int = 4) -> list[np.ndarray]:
    """Dense ``voxel_size³`` float32 volumes from ``n`` latents (``z`` or drawn from ``seed``)."""
    from medgen_cli.sparse.common import to_dense

    size = family.cfg.data.voxel_size
    if z is None:
        z = latents(seed, n, family.cfg.generator.latent_dim)
    out = []
    for start in range(0, z.shape[0], batch_size):
        x = gen(z[start:start + batch_size].to(device))
        dense = to_dense(x.with_feats(x.feats.float()), size)[:, 0]
        out.extend(v.cpu().numpy().astype(np.float32) for v in dense)
    return out


def _formats(spec: str) -> list[str]:
    fmts = [f.strip() for f in spec.split(",") if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise MedgenError(f"sparse-gan cannot write format {spec!r}",
                          f"use {', '.join(FORMATS)} or a comma list such as nifti,points")
    return fmts


def _check_options(opts: Any) -> None:
    unsupported = {"scheduler": None, "steps": None, "guidance_scale": None, "class_label": None, "input": None}
    for key, default in unsupported.items():
        if getattr(opts, key, default) is not default:
            raise MedgenError(f"--{key.replace('_', '-')} does not apply to sparse-gan runs")
    if getattr(opts, "truncation", 1.0) != 1.0:
        raise MedgenError("--truncation does not apply to sparse-gan runs")


def _write(family: Any, vol: np.ndarray, stem: Path, fmts: list[str], threshold: float,
           overwrite: bool) -> list[Path]:
    from medgen_cli.data.points import save_points, volume_to_points
    from medgen_cli.io import atomic_path, save_nifti

    affine = np.asarray(family.affine, dtype=np.float64)
    paths = []
    for fmt in fmts:
        path = stem.with_name(stem.name + FORMATS[fmt])
        if fmt == "nifti":
            save_nifti(vol, path, affine=affine, overwrite=overwrite)
        elif fmt == "npy":
            check_writable(path, overwrite)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, vol)
        else:
            pts, vals = volume_to_points(vol, affine, threshold, return_values=True)
            save_points(pts, path, values=vals, overwrite=overwrite)
        paths.append(path)
    return paths


def sample_to_dir(family: Any, opts: Any, ctx: Any) -> list[Path]:
    """``medgen sample``: ``sample_NNNN.nii.gz`` (and/or ``.npy``, ``.ply`` points) in ``opts.out``."""
    _check_options(opts)
    fmts = _formats(opts.format)
    out = Path(opts.out)
    stems = [out / f"sample_{i:04d}" for i in range(opts.num)]
    for stem in stems:  # refuse before generating anything
        for fmt in fmts:
            check_writable(stem.with_name(stem.name + FORMATS[fmt]), opts.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    gen = ctx.eval_module("generator")
    z = latents(opts.seed, opts.num, family.cfg.generator.latent_dim)
    paths: list[Path] = []
    batches = range(0, opts.num, opts.batch_size)
    for start in ctx.track(iter(batches), len(batches), "sampling"):
        vols = generate_volumes(family, gen, 0, 0, ctx.device, z=z[start:start + opts.batch_size],
                                batch_size=opts.batch_size)
        for i, vol in enumerate(vols):
            paths += _write(family, vol, stems[start + i], fmts, opts.threshold, opts.overwrite)
    return paths


def interpolate_to_dir(family: Any, opts: Any, ctx: Any) -> list[Path]:
    """``medgen interpolate``: ``frame_NNN`` volumes along slerp/lerp between two seeds' latents."""
    if opts.method not in ("slerp", "lerp"):
        raise MedgenError(f"unknown interpolation method {opts.method!r}", "use slerp or lerp")
    if opts.scheduler is not None or opts.sample_steps is not None or opts.truncation != 1.0:
        raise MedgenError("--scheduler/--sample-steps/--truncation do not apply to sparse-gan runs")
    fmts = _formats(opts.format)
    dim = family.cfg.generator.latent_dim
    za, zb = latents(opts.seed_a, 1, dim)[0], latents(opts.seed_b, 1, dim)[0]
    z = interpolation_path(za, zb, opts.steps, opts.method)
    out = Path(opts.out)
    stems = [out / f"frame_{k:03d}" for k in range(opts.steps)]
    for stem in stems:
        for fmt in fmts:
            check_writable(stem.with_name(stem.name + FORMATS[fmt]), opts.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    vols = generate_volumes(family, ctx.eval_module("generator"), 0, 0, ctx.device, z=z)
    paths: list[Path] = []
    for stem, vol in zip(stems, vols):
        paths += _write(family, vol, stem, fmts, 0.5, opts.overwrite)
    return paths
