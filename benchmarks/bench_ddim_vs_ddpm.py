"""Sampler speed and quality: DDPM-1000 vs DDIM-50 (DDPM objective) vs RFlow-30 (rectified flow).

Speed (default): the latent UNet of MONAI's 3D LDM tutorial (channels (32, 64, 64), attention on
the last two levels) with random weights — time does not depend on them — through medgen's
``sampling.denoise`` with the same noise for every sampler.

    python -m benchmarks.bench_ddim_vs_ddpm                 # latent 3x8^3 (32^3 volumes), CPU
    python -m benchmarks.bench_ddim_vs_ddpm --latent 16 --device cuda   # 64^3 volumes

Quality at equal training (``--quality DEMO_OUT``): takes a finished ``medgen demo --out DEMO_OUT``
(synthetic shapes, autoencoder and a class-conditional rectified-flow run), trains a DDPM-objective
twin with the identical config and step count, then samples both and reports, per sampler,
seconds per sample, the share of samples a classifier trained on the real volumes assigns to
their class, and (unless ``--no-fid``) the 2.5D FID vs the held-out volumes.

    medgen demo --out /tmp/demo --no-fid
    python -m benchmarks.bench_ddim_vs_ddpm --quality /tmp/demo --num 30 --json samplers.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")



def speed(args: argparse.Namespace) -> None:
    from monai.networks.nets import DiffusionModelUNet

    from medgen_cli.families.diffusion.config import NoiseScheduleConfig
    from medgen_cli.families.diffusion.sampling import denoise, make_scheduler
    from medgen_cli.families.latents import seeded_normal

    dev = torch.device(args.device)
    torch.manual_seed(0)
    unet = DiffusionModelUNet(spatial_dims=3, in_channels=3, out_channels=3, num_res_blocks=1, channels=(32, 64, 64),
                              attention_levels=(False, True, True), num_head_channels=(0, 64, 64)).to(dev).eval()
    noise = seeded_normal((3, args.latent, args.latent, args.latent), list(range(args.batch))).to(dev)

    def run(kind: str, steps: int) -> float:
        cfg = NoiseScheduleConfig(objective="rflow" if kind == "rflow" else "ddpm")
        sched = make_scheduler(cfg, kind)
        sched.set_timesteps(steps)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            denoise(unet, sched, noise, None, None, None, 0)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    run("ddim", 2)  # warm-up (allocations, kernels)
    times = {"ddim": run("ddim", args.ddim_steps), "rflow": run("rflow", args.rflow_steps),
             "ddpm": run("ddpm", args.ddpm_steps)}
    steps = {"ddim": args.ddim_steps, "rflow": args.rflow_steps, "ddpm": args.ddpm_steps}
    print(f"latent 3x{args.latent}^3, batch {args.batch}, device {dev}, torch threads {torch.get_num_threads()}")
    for k in ("ddpm", "ddim", "rflow"):
        print(f"{k.upper()}-{steps[k]}: {times[k] / args.batch:8.2f} s/sample  ({times[k] / steps[k] * 1000:.1f} ms/step)")
    print(f"ratio DDPM/DDIM: {times['ddpm'] / times['ddim']:.1f}x (step-count ratio {args.ddpm_steps / args.ddim_steps:.0f}x)")
    print(f"ratio DDPM/RFlow: {times['ddpm'] / times['rflow']:.1f}x (step-count ratio {args.ddpm_steps / args.rflow_steps:.0f}x)")


def train_ddpm_twin(rflow_run: Path) -> Path:
    """A DDPM-objective run with the rectified-flow run's config and steps (same data, autoencoder)."""
    from medgen_cli.config.loading import load_yaml
    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.config.build import build_config

    saved = load_yaml(rflow_run / "config.yaml")
    saved.pop("medgen_version", None)  # written by the trainer, not a config key
    saved["noise"]["objective"] = "ddpm"
    saved["sample"]["scheduler"] = "auto"
    saved["name"] = f"{rflow_run.name}-ddpm-twin"
    target = rflow_run.parent / saved["name"]
    if (target / "checkpoints" / "latest.pt").is_file():
        return target
    run = train_from_config(build_config("diffusion", base=saved))
    assert run is not None
    return run


def quality(args: argparse.Namespace) -> None:
    import numpy as np

    from medgen_cli.api import load_run
    from medgen_cli.metrics.sample_quality import fid_with_floor, sample_class_accuracy

    from benchmarks.quality_ldm import real_volumes

    rflow_run = args.quality / "runs" / "diffusion" / "diffusion"
    twin = train_ddpm_twin(rflow_run)
    rows = []
    real = None
    for run_dir, kind, steps in ((twin, "ddpm", args.ddpm_steps), (twin, "ddim", args.ddim_steps),
                                 (rflow_run, "rflow", args.rflow_steps)):
        run = load_run(run_dir, checkpoint="latest")
        if real is None:
            real = real_volumes(run, "train"), real_volumes(run, "val")
        (train, train_labels), (held, held_labels) = real
        n = args.num if kind != "ddpm" else max(3, args.num // args.ddpm_fraction)
        t0 = time.perf_counter()
        samples = run.sample(n, seed=10_000, scheduler=kind, steps=steps)
        sec = (time.perf_counter() - t0) / n
        vols = np.asarray(samples)
        row = {"sampler": kind, "steps": steps, "train_steps": run.step, "num": n, "s_per_sample": sec,
               **sample_class_accuracy(train, train_labels, vols, list(samples.labels), held, held_labels),
               "outside_0_1": float(np.mean((vols < 0) | (vols > 1)))}
        if not args.no_fid:
            row.update(fid_with_floor(train, held, vols, center_fraction=0.5))
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latent", type=int, default=8, help="latent edge length (volume size / 4)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--ddpm-steps", type=int, default=1000)
    ap.add_argument("--rflow-steps", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quality", type=Path, default=None, help="a finished `medgen demo --out` folder")
    ap.add_argument("--num", type=int, default=30, help="--quality: samples per sampler")
    ap.add_argument("--ddpm-fraction", type=int, default=3, help="--quality: DDPM-1000 draws num/this samples (slow)")
    ap.add_argument("--no-fid", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.quality is not None:
        quality(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
