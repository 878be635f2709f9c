"""32³ crops of the MNI152 T1 template that nilearn ships as package data (no download).

Real anatomy for the autoencoder/LDM quality benchmarks. The template (1 mm, 197×233×189, already
in [0, 1] and skull-stripped) is cut into crops that are mostly brain. Train, val and test come
from disjoint regions along the anterior-posterior axis, so no test voxel is ever seen in
training:

    y ∈ [96, 128)  test slab   (one crop row, crops never overlap)
    y ∈ [56, 88)   val slab    (picks best.pt only)
    the rest       train       (crops that do not touch either slab, stride ``--stride``)

    pip install 'medgen[bench]'          # nilearn
    python -m benchmarks.make_mni_crops --out data/mni32
    python -m benchmarks.quality_autoencoder --train data/mni32/train --test data/mni32/test --json ae.json

Writes OUT/{train,val,test}/*.nii.gz (float32, [0, 1], 1 mm identity-like affine of the crop).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TEST_SLAB = (96, 128)
VAL_SLAB = (56, 88)


def crop_starts(extent: int, size: int, stride: int) -> list[int]:
    """Start indices of crops of ``size`` along an axis of ``extent`` voxels."""
    return list(range(0, extent - size + 1, stride))


def overlaps(a0: int, size: int, slab: tuple[int, int]) -> bool:
    return a0 < slab[1] and a0 + size > slab[0]


def make_crops(vol: np.ndarray, size: int, stride: int, min_brain: float) -> dict[str, list[tuple[int, int, int]]]:
    """Crop corners per split; a crop keeps only if ``min_brain`` of its voxels are brain (> 0.05)."""
    brain = vol > 0.05
    splits: dict[str, list[tuple[int, int, int]]] = {"train": [], "val": [], "test": []}
    xs, zs = crop_starts(vol.shape[0], size, stride), crop_starts(vol.shape[2], size, stride)
    held_xs, held_zs = crop_starts(vol.shape[0], size, size), crop_starts(vol.shape[2], size, size)
    for name, slab in (("test", TEST_SLAB), ("val", VAL_SLAB)):
        y = slab[0]
        splits[name] = [(x, y, z) for x in held_xs for z in held_zs
                        if brain[x:x + size, y:y + size, z:z + size].mean() >= min_brain]
    for y in crop_starts(vol.shape[1], size, stride):
        if overlaps(y, size, TEST_SLAB) or overlaps(y, size, VAL_SLAB):
            continue
        splits["train"] += [(x, y, z) for x in xs for z in zs
                            if brain[x:x + size, y:y + size, z:z + size].mean() >= min_brain]
    return splits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=32, help="crop edge in voxels (1 mm)")
    ap.add_argument("--stride", type=int, default=12, help="stride between training crops")
    ap.add_argument("--min-brain", type=float, default=0.6, help="minimum brain fraction of a crop")
    args = ap.parse_args()

    import nibabel as nib
    from nilearn.datasets import load_mni152_template

    from medgen_cli.io import save_nifti

    img = load_mni152_template(resolution=1)
    vol = np.clip(np.asarray(img.get_fdata(), dtype=np.float32), 0.0, 1.0)
    s = args.size
    for split, corners in make_crops(vol, s, args.stride, args.min_brain).items():
        folder = args.out / split
        folder.mkdir(parents=True, exist_ok=True)
        for x, y, z in corners:
            affine = img.affine.copy()
            affine[:3, 3] = nib.affines.apply_affine(img.affine, (x, y, z))
            save_nifti(vol[x:x + s, y:y + s, z:z + s], folder / f"mni_{x:03d}_{y:03d}_{z:03d}.nii.gz", affine=affine,
                       overwrite=True)
        print(f"{split}: {len(corners)} crops of {s}^3 -> {folder}")


if __name__ == "__main__":
    main()
