"""Autoencoder reconstruction quality on held-out volumes vs the trivial trilinear code.

Trains `medgen train autoencoder` (default: the CPU preset configs/cpu/autoencoder.yaml) on a
folder of NIfTI volumes in [0, 1] for a wall-clock budget (or until the config's
``trainer.max_steps``, which sizes its learning-rate schedule, if that comes first), then
reconstructs every test volume (posterior mean, EMA weights) and compares with the baseline that
stores as many numbers as the latent: each test volume resized trilinearly to a cube of that many voxels and back.

    python -m benchmarks.make_mni_crops --out data/mni32
    python -m benchmarks.quality_autoencoder --train data/mni32/train --val data/mni32/val \
        --test data/mni32/test --minutes 20 --json ae.json

PSNR and SSIM are medgen's (``medgen_cli.metrics.recon``: data range 1, scikit-image SSIM, 7³
window), averaged over the test volumes. The JSON holds psnr, ssim, baseline_psnr,
baseline_ssim, latent_values, steps, minutes, threads, config and the run directory; ``<json>.png``
shows test volumes (left) and their reconstructions (right) as MIPs. Training, the JSON and the
figure go through :mod:`benchmarks.harness`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import harness


def latent_values(cfg: object) -> int:
    """Numbers in one latent: channels × the volume size halved once per extra level."""
    size = list(cfg.data.size)  # type: ignore[attr-defined]
    for _ in range(len(cfg.model.channels) - 1):  # type: ignore[attr-defined]
        size = [s // 2 for s in size]
    return int(cfg.model.latent_channels * np.prod(size))  # type: ignore[attr-defined]


def evaluate(run_dir: Path, test: list[Path], values: int, checkpoint: str) -> tuple[dict[str, float], list[Any]]:
    """Mean PSNR/SSIM of the run's reconstructions and of the trilinear baseline; the reconstructions."""
    from medgen_cli.api import load_run
    from medgen_cli.io import load_nifti
    from medgen_cli.metrics.recon import psnr, ssim

    run = load_run(run_dir, checkpoint=checkpoint)
    rows, recs = [], []
    for f in test:
        ref = np.asarray(load_nifti(f)[0], dtype=np.float32)
        rec = np.asarray(run.reconstruct(f))
        rec = rec[0] if rec.ndim == ref.ndim + 1 else rec  # one reconstruction: drop the item axis
        base = harness.trilinear_baseline(ref, values)
        recs.append(rec)
        rows.append((psnr(rec, ref), ssim(rec, ref), psnr(base, ref), ssim(base, ref)))
    m = np.mean(np.asarray(rows), axis=0)
    return {"psnr": float(m[0]), "ssim": float(m[1]), "baseline_psnr": float(m[2]), "baseline_ssim": float(m[3]),
            "checkpoint_step": int(run.step)}, recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True, help="folder of training NIfTI volumes in [0, 1]")
    ap.add_argument("--test", type=Path, required=True, help="folder of held-out NIfTI volumes in [0, 1]")
    ap.add_argument("--val", type=Path, default=None, help="optional folder that picks best.pt (default: latest)")
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget (wall clock)")
    ap.add_argument("--config", type=Path, default=harness.cpu_preset("autoencoder"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value overrides")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", type=Path, default=None, help="keep the run under OUT (default: a temp folder)")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    import torch

    from medgen_cli.io import load_nifti

    torch.set_num_threads(args.threads)
    train, test = harness.nifti_files(args.train), harness.nifti_files(args.test)
    shape = list(np.asarray(load_nifti(test[0])[0]).shape)
    with tempfile.TemporaryDirectory(prefix="medgen-qae-") as tmp:
        root = Path(tmp) / "data"
        harness.link_split(root, "train", train)
        if args.val is not None:
            harness.link_split(root, "val", harness.nifti_files(args.val))
        out = args.out or Path(tmp) / "runs"
        cfg = harness.build("autoencoder", args.config, [
            f"output_dir={out}", f"name=qae-{time.strftime('%Y%m%d-%H%M%S')}", f"data.root={root}",
            f"data.size={shape}", "data.intensity=none",
            *([] if args.val else ["trainer.val_every=100000000"]), *args.overrides])
        trained = harness.train(cfg, args.minutes)
        run, steps, minutes, cpu_minutes = trained.run, trained.steps, trained.minutes, trained.cpu_minutes
        values = latent_values(cfg)
        res, recs = evaluate(run, test, values, "best" if args.val else "latest")
    res.update({"steps": steps, "minutes": round(minutes, 2), "cpu_minutes": round(cpu_minutes, 2),
                "load_average": os.getloadavg()[0], "latent_values": values, "threads": args.threads,
                "config": str(args.config), "overrides": args.overrides, "run": str(run) if args.out else None,
                "test_volumes": len(test), "train_volumes": len(train)})
    harness.write_json(args.json, res)
    harness.mip_grid(test, recs, args.json.with_suffix(".png"), titles=("test", "reconstructed"))
    print(f"steps {steps} in {minutes:.1f} min ({cpu_minutes:.1f} CPU min): PSNR {res['psnr']:.2f} (baseline {res['baseline_psnr']:.2f}), "
          f"SSIM {res['ssim']:.4f} (baseline {res['baseline_ssim']:.4f})")


if __name__ == "__main__":
    main()
