"""The 2D GAN benchmark sets: ~300-image 64×64 grayscale TRAIN and REF splits cut from
scikit-image's package data (no download), one folder per set.

    python -m benchmarks.make_gan2d_data OUT [--sets coins_hubble,retina,textures,faces] [--n 300] [--size 64] [--seed 0]

writes ``OUT/<set>/train/*.png``, ``OUT/<set>/ref/*.png`` (8-bit grayscale) and ``OUT/<set>/set.json``
(sources, sizes, seed, where each patch came from) for each set (default: all of them):

* ``coins_hubble``: ``coins`` + ``hubble_deep_field``, 64² crops (left half of each image → train,
  right half → ref); pixel for pixel the set of the earlier measurements in docs/gan2d.md.
* ``retina``: the ``retina`` fundus downscaled 4× (352²), 64² crops inside the fundus (top → train,
  bottom → ref).
* ``textures``: ``grass``, ``gravel``, ``brick`` (512² each), 64² crops (left → train, right → ref).
* ``faces``: ``lfw_subset()``'s 100 faces (25²), 22² crops resized to 64² (faces 0–49 → train,
  50–99 → ref).

The sets are built by :mod:`medgen_cli.data.patch_sets` (crop sizes, seeds and splits documented
there; tests check them). ``cell`` and ``immunohistochemistry`` are refused: the team checks on
sets nobody tuned on.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from medgen_cli.data.patch_sets import SETS, check_name, write_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="one folder per set is made in it")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma list (default: all: {','.join(SETS)})")
    ap.add_argument("--n", type=int, default=300, help="patches per split")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    try:
        for name in names:
            check_name(name)
    except ValueError as err:
        raise SystemExit(f"make_gan2d_data: {err}") from None
    for name in names:
        folders = write_set(name, args.out / name, args.n, args.size, args.seed)
        print(f"{name}: " + " ".join(f"{k}={v} ({args.n})" for k, v in folders.items()), flush=True)


if __name__ == "__main__":
    main()
