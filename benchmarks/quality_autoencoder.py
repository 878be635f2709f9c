"""Autoencoder reconstruction quality on held-out volumes vs the trivial trilinear code.

Trains `medgen train autoencoder` (default: the CPU preset configs/cpu/autoencoder.yaml) on a
folder of NIfTI volumes in [0, 1] for a wall-clock budget (or until the config's
``trainer.max_steps``, which sizes its learning-rate schedule, if that comes first), then
reconstructs every test volume (posterior mean, EMA weights) and compares with the baseline that
stores as many numbers as the latent: each test volume resized trilinearly to a cube of that many voxels and back.

    python benchmarks/make_mni_crops.py --out data/mni32
    python benchmarks/quality_autoencoder.py --train data/mni32/train --val data/mni32/val \
        --test data/mni32/test --minutes 20 --json ae.json

PSNR and SSIM are medgen's (``medgen_cli.metrics.recon``: data range 1, scikit-image SSIM, 7³
window), averaged over the test volumes. The JSON holds psnr, ssim, baseline_psnr,
baseline_ssim, latent_values, steps, minutes, threads, config and the run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _budget import link_split, nifti_files, train_for_minutes, trilinear_baseline  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def latent_values(cfg: object) -> int:
    """Numbers in one latent: channels × the volume size halved once per extra level."""
    size = list(cfg.data.size)  # type: ignore[attr-defined]
    for _ in range(len(cfg.model.channels) - 1):  # type: ignore[attr-defined]
        size = [s // 2 for s in size]
    return int(cfg.model.latent_channels * np.prod(size))  # type: ignore[attr-defined]


def evaluate(run_dir: Path, test: list[Path], values: int, checkpoint: str) -> dict[str, float]:
    """Mean PSNR/SSIM of the run's reconstructions and of the trilinear baseline."""
    from medgen_cli.api import load_run
    from medgen_cli.io import load_nifti
    from medgen_cli.metrics.recon import psnr, ssim

    run = load_run(run_dir, checkpoint=checkpoint)
    rows = []
    for f in test:
        ref = np.asarray(load_nifti(f)[0], dtype=np.float32)
        rec = np.asarray(run.reconstruct(f))
        rec = rec[0] if rec.ndim == ref.ndim + 1 else rec  # one reconstruction: drop the item axis
        base = trilinear_baseline(ref, values)
        rows.append((psnr(rec, ref), ssim(rec, ref), psnr(base, ref), ssim(base, ref)))
    m = np.mean(np.asarray(rows), axis=0)
    return {"psnr": float(m[0]), "ssim": float(m[1]), "baseline_psnr": float(m[2]), "baseline_ssim": float(m[3]),
            "checkpoint_step": int(run.step)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True, help="folder of training NIfTI volumes in [0, 1]")
    ap.add_argument("--test", type=Path, required=True, help="folder of held-out NIfTI volumes in [0, 1]")
    ap.add_argument("--val", type=Path, default=None, help="optional folder that picks best.pt (default: latest)")
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget (wall clock)")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "cpu" / "autoencoder.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value overrides")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", type=Path, default=None, help="keep the run under OUT (default: a temp folder)")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    import torch

    from medgen_cli.config.build import build_config
    from medgen_cli.io import load_nifti

    torch.set_num_threads(args.threads)
    train, test = nifti_files(args.train), nifti_files(args.test)
    shape = list(np.asarray(load_nifti(test[0])[0]).shape)
    with tempfile.TemporaryDirectory(prefix="medgen-qae-") as tmp:
        root = Path(tmp) / "data"
        link_split(root, "train", train)
        if args.val is not None:
            link_split(root, "val", nifti_files(args.val))
        out = args.out or Path(tmp) / "runs"
        cfg = build_config("autoencoder", args.config, [
            f"output_dir={out}", f"name=qae-{time.strftime('%Y%m%d-%H%M%S')}", f"data.root={root}",
            f"data.size={shape}", "data.intensity=none",
            *([] if args.val else ["trainer.val_every=100000000"]), *args.overrides])
        run, steps, minutes, cpu_minutes = train_for_minutes(cfg, args.minutes)
        values = latent_values(cfg)
        res = evaluate(run, test, values, "best" if args.val else "latest")
    res.update({"steps": steps, "minutes": round(minutes, 2), "cpu_minutes": round(cpu_minutes, 2),
                "load_average": os.getloadavg()[0], "latent_values": values, "threads": args.threads,
                "config": str(args.config), "overrides": args.overrides, "run": str(run) if args.out else None,
                "test_volumes": len(test), "train_volumes": len(train)})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(f"steps {steps} in {minutes:.1f} min ({cpu_minutes:.1f} CPU min): PSNR {res['psnr']:.2f} (baseline {res['baseline_psnr']:.2f}), "
          f"SSIM {res['ssim']:.4f} (baseline {res['baseline_ssim']:.4f})")


if __name__ == "__main__":
    main()
