"""Pseudo-CT heads in HU from nilearn's MNI152 template: real anatomy for CBCT training and tests.

No CT data set can be downloaded here, but nilearn ships the MNI152 2009a template (T1, grey- and
white-matter probability maps and a brain mask at 1 mm) as package data. This script turns it into
CT-like heads (``pip install 'medgen[cbct-data]'`` or ``pip install nilearn``)::

    python -m benchmarks.make_mni_ct --out data/mni-ct --variants 8
    medgen data make-cbct data/mni-ct/train --geometry data/mni-ct/geometry.yaml --size 32 \\
        --poses 12 --out data/cbct-mni-train

HU model (typical CT values, jittered per variant):

* air −1000 outside the head;
* brain: grey matter 35–45 HU, white matter 22–32 HU, CSF 0–15 HU, mixed by the template's
  GM/WM probabilities (CSF = the rest of the brain mask), plus the T1 intensity as a ±5 HU texture;
* a 2–4 mm CSF/meningeal layer around the brain (10 HU);
* a skull shell 4–8 mm thick: dense outer and inner tables (+800..1000 HU) around a diploë of
  +450..650 HU;
* a 3–7 mm scalp (30 HU) with a thin fat layer (−100 HU).

Each variant is also warped by a smooth random displacement field (σ 20 mm, up to ~6 mm), so the
variants differ in shape, not only in values.

Held-out anatomy: every variant is cut at an axial plane; ``train/`` gets the part above the cut
(vertex, parietal and frontal lobes) and ``test/`` the part below it (temporal lobes, cerebellum,
skull base) — different anatomy, never seen in training. ``--holdout none`` writes whole heads to
both (other variants in test). ``geometry.yaml`` is a cone-beam geometry whose 240 mm volume (480 mm detector)
fits a head (DSO 800 mm, DSD 1200 mm, 50 views over 180°).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HEAD_GEOMETRY = {"dso": 800.0, "dsd": 1200.0, "volume_size": 64, "voxel_spacing": 3.75, "detector_size": 64,
                 "detector_spacing": 7.5, "num_angles": 50, "angle_range": 180.0, "start_angle": 0.0}


def load_template() -> dict[str, np.ndarray]:
    """MNI152 T1, GM, WM and brain mask at 1 mm (nilearn package data, no download)."""
    try:
        from nilearn import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("nilearn is needed: pip install nilearn (or pip install 'medgen[cbct-data]')") from exc
    maps = {"t1": datasets.load_mni152_template(resolution=1), "gm": datasets.load_mni152_gm_template(resolution=1),
            "wm": datasets.load_mni152_wm_template(resolution=1), "mask": datasets.load_mni152_brain_mask(resolution=1)}
    out = {k: np.asarray(v.get_fdata(), dtype=np.float32) for k, v in maps.items()}
    out["affine"] = np.asarray(maps["t1"].affine, dtype=np.float64)
    return out


def pseudo_ct(tpl: dict[str, np.ndarray], outside_mm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One HU head on the template grid (``outside_mm``: distance from the brain mask in mm)."""
    brain = tpl["mask"] > 0.5
    gm, wm = np.clip(tpl["gm"], 0, 1), np.clip(tpl["wm"], 0, 1)
    csf = np.clip(1 - gm - wm, 0, 1)
    hu_gm, hu_wm, hu_csf = rng.uniform(35, 45), rng.uniform(22, 32), rng.uniform(0, 15)
    texture = (tpl["t1"] - tpl["t1"][brain].mean()) * 10.0
    hu = np.full(brain.shape, -1000.0, np.float32)
    hu[brain] = (gm * hu_gm + wm * hu_wm + csf * hu_csf + texture)[brain]
    meninges = rng.uniform(2, 4)
    skull = rng.uniform(4, 8)
    scalp = rng.uniform(3, 7)
    table = skull * 0.3
    d = outside_mm
    ring = lambda a, b: (d > a) & (d <= b)  # noqa: E731  (shell between two distances)
    hu[ring(0, meninges)] = 10.0
    inner, outer = meninges, meninges + skull
    hu[ring(inner, outer)] = rng.uniform(450, 650)                                   # diploë
    hu[ring(inner, inner + table) | ring(outer - table, outer)] = rng.uniform(800, 1000)  # tables
    hu[ring(outer, outer + 1.5)] = -100.0                                             # fat
    hu[ring(outer + 1.5, outer + scalp)] = 30.0                                       # scalp
    return hu


def random_warp(hu: np.ndarray, rng: np.random.Generator, sigma_mm: float = 20.0, amp_mm: float = 6.0) -> np.ndarray:
    """Resample ``hu`` through a smooth random displacement field (1 mm voxels)."""
    from scipy.ndimage import gaussian_filter, map_coordinates, zoom

    coarse = [max(2, s // 8) for s in hu.shape]  # smooth field at 1/8 resolution, then upsampled
    field = []
    for _ in range(3):
        f = gaussian_filter(rng.standard_normal(coarse), sigma_mm / 8)
        f *= amp_mm / (np.abs(f).max() + 1e-8)
        field.append(zoom(f, [s / c for s, c in zip(hu.shape, coarse)], order=1))
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in hu.shape], indexing="ij")
    coords = [g + f[: g.shape[0], : g.shape[1], : g.shape[2]] for g, f in zip(grid, field)]
    return map_coordinates(hu, coords, order=1, mode="constant", cval=-1000.0).astype(np.float32)


def downsample(hu: np.ndarray, affine: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Block-average by ``factor`` (keeps files small; make-cbct resamples anyway)."""
    if factor <= 1:
        return hu, affine
    s = [n // factor * factor for n in hu.shape]
    h = hu[: s[0], : s[1], : s[2]].reshape(s[0] // factor, factor, s[1] // factor, factor, s[2] // factor, factor)
    aff = affine.copy()
    aff[:3, :3] = affine[:3, :3] * factor
    aff[:3, 3] = affine[:3, 3] + affine[:3, :3] @ np.full(3, (factor - 1) / 2)
    return h.mean(axis=(1, 3, 5)).astype(np.float32), aff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", type=int, default=8, help="warped/jittered heads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout", choices=["inferior", "none"], default="inferior",
                    help="inferior: train above an axial cut, test below it")
    ap.add_argument("--cut", type=float, default=0.5, help="axial cut as a fraction of the head's height")
    ap.add_argument("--downsample", type=int, default=2, help="block-average factor of the written volumes")
    args = ap.parse_args()

    import nibabel as nib
    from scipy.ndimage import distance_transform_edt

    tpl = load_template()
    outside = distance_transform_edt(tpl["mask"] <= 0.5).astype(np.float32)  # mm (1 mm voxels)
    for split in ("train", "test"):
        (args.out / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for i in range(args.variants):
        hu = random_warp(pseudo_ct(tpl, outside, rng), rng)
        zs = np.nonzero((hu > -500).any(axis=(0, 1)))[0]
        cut = int(zs[0] + args.cut * (zs[-1] - zs[0]))
        parts = {"train": hu.copy(), "test": hu.copy()}
        if args.holdout == "inferior":
            parts["train"][:, :, :cut] = -1000.0
            parts["test"][:, :, cut:] = -1000.0
        for split, vol in parts.items():
            if args.holdout == "none" and (split == "test") != (i % 4 == 3):
                continue  # whole heads: every fourth variant is held out
            small, aff = downsample(vol, tpl["affine"], args.downsample)
            nib.save(nib.Nifti1Image(small, aff), str(args.out / split / f"mni_{i:03d}.nii.gz"))
        print(f"variant {i}: cut at z={cut} of {zs[0]}..{zs[-1]}", flush=True)
    import yaml

    (args.out / "geometry.yaml").write_text(yaml.safe_dump(HEAD_GEOMETRY, sort_keys=False))
    (args.out / "recipe.json").write_text(json.dumps(vars(args), default=str, indent=2))
    print(f"wrote {args.out}/train, {args.out}/test and {args.out}/geometry.yaml")


if __name__ == "__main__":
    main()
