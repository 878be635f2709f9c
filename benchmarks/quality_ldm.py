"""Quality of a trained latent diffusion run: 2.5D FID of its samples vs held-out volumes next to
the real-vs-real floor, the samples' value range, and (class-conditional runs) the share a
classifier trained on the real training volumes assigns to each sample's class.

    python -m benchmarks.quality_ldm --run runs/diffusion/NAME --num 30 --json ldm.json
    python -m benchmarks.quality_ldm --run demo_out/runs/diffusion/diffusion --scheduler rflow --steps 30 --json q.json

Real volumes are read through the run's own data pipeline (its autoencoder's size and intensity
scaling): training volumes from DATA/train, held-out ones from DATA/val or ``--held-out DIR``.
The floor is FID(held-out, as many training volumes as samples): a perfect generator of that many
volumes scores about this. FID uses medgen's verified Inception weights (`medgen eval fid`), a
fixed [0, 1] window (values outside are clipped, as a viewer shows them) and the central
``--center-fraction`` of the slices along each axis. Beside the JSON, ``<json>.png`` shows held-out
volumes (left) and samples (right) as MIPs (:mod:`benchmarks.harness`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import harness


def real_volumes(run: object, split: str, folder: Path | None = None) -> tuple[list[np.ndarray], list[int] | None]:
    """Volumes (and labels, for conditional runs) of a split, prepared as the run's training saw them."""
    from medgen_cli.data.datasets import make_dataset

    dc = run.family.data_config()  # type: ignore[attr-defined]
    if folder is not None:
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="medgen-qldm-"))
        (tmp / "train").symlink_to(Path(folder).resolve())
        dc = dc.model_copy(update={"root": str(tmp), "use_labels": False})
        split = "train"
    ds = make_dataset(dc.model_copy(update={"cache_rate": 0.0}), split)
    items = [ds[i] for i in range(len(ds))] if ds is not None else []
    vols = [it["image"][0].numpy() for it in items]
    labels = [int(it["label"]) for it in items] if items and "label" in items[0] else None
    return vols, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a diffusion run directory")
    ap.add_argument("--held-out", type=Path, default=None, help="folder of held-out NIfTI (default: DATA/val)")
    ap.add_argument("--num", type=int, default=30, help="samples to draw")
    ap.add_argument("--scheduler", default=None, help="sampler (default: the run's)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the run's)")
    ap.add_argument("--guidance-scale", type=float, default=None)
    ap.add_argument("--center-fraction", type=float, default=0.5, help="central fraction of slices per axis for FID")
    ap.add_argument("--no-fid", action="store_true", help="skip FID (no Inception weights here)")
    ap.add_argument("--checkpoint", default="best")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    import torch

    from medgen_cli.api import load_run
    from medgen_cli.metrics.sample_quality import fid_with_floor, sample_class_accuracy

    torch.set_num_threads(args.threads)
    run = load_run(args.run, checkpoint=args.checkpoint)
    options = {k: v for k, v in (("scheduler", args.scheduler), ("steps", args.steps),
                                 ("guidance_scale", args.guidance_scale)) if v is not None}
    t0 = time.perf_counter()
    samples = run.sample(args.num, seed=10_000, **options)
    seconds = time.perf_counter() - t0
    vols = np.asarray(samples)
    train, train_labels = real_volumes(run, "train")
    held, held_labels = real_volumes(run, "val", args.held_out)
    res: dict[str, object] = {
        "run": str(args.run), "step": run.step, "num": args.num, **options, "s_per_sample": seconds / args.num,
        "sample_min": float(vols.min()), "sample_max": float(vols.max()),
        "outside_0_1": float(np.mean((vols < 0) | (vols > 1))),
        "real_min": float(np.min(train)), "real_max": float(np.max(train)),
        "train_volumes": len(train), "held_out_volumes": len(held),
    }
    labels = getattr(samples, "labels", [None])
    if train_labels is not None and labels and labels[0] is not None:
        res.update(sample_class_accuracy(train, train_labels, vols, list(labels), held, held_labels))
    if not args.no_fid:
        res.update(fid_with_floor(train, held, vols, center_fraction=args.center_fraction))
    harness.write_json(args.json, res)
    harness.mip_grid(held, list(vols), args.json.with_suffix(".png"), titles=("held-out", "generated"))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
