"""DDIM-50 vs DDPM-1000 sampling time with the same latent UNet (what `medgen sample` runs).

The UNet is MONAI's DiffusionModelUNet with the 3D LDM tutorial settings (channels (32, 64, 64),
attention on the last two levels); weights are random because time does not depend on them.
Both samplers go through ``medgen_cli.families.diffusion.sampling.denoise`` with the same noise.

    python benchmarks/bench_ddim_vs_ddpm.py                 # latent 3x8^3 (32^3 volumes), CPU
    python benchmarks/bench_ddim_vs_ddpm.py --latent 16 --device cuda   # 64^3 volumes

Prints seconds per sample for each sampler and the DDPM/DDIM ratio (ideal: 1000/50 = 20).
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latent", type=int, default=8, help="latent edge length (volume size / 4)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--ddpm-steps", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from monai.networks.nets import DiffusionModelUNet

    from medgen_cli.families.diffusion.config import NoiseScheduleConfig
    from medgen_cli.families.diffusion.sampling import denoise, make_scheduler, seeded_noise

    dev = torch.device(args.device)
    torch.manual_seed(0)
    unet = DiffusionModelUNet(spatial_dims=3, in_channels=3, out_channels=3, num_res_blocks=1, channels=(32, 64, 64),
                              attention_levels=(False, True, True), num_head_channels=(0, 64, 64)).to(dev).eval()
    noise = seeded_noise((3, args.latent, args.latent, args.latent), list(range(args.batch)), dev)
    cfg = NoiseScheduleConfig()

    def run(kind: str, steps: int) -> float:
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
    t_ddim = run("ddim", args.ddim_steps)
    t_ddpm = run("ddpm", args.ddpm_steps)
    per = args.batch
    print(f"latent 3x{args.latent}^3, batch {args.batch}, device {dev}, torch threads {torch.get_num_threads()}")
    print(f"DDIM-{args.ddim_steps}:  {t_ddim / per:8.2f} s/sample  ({t_ddim / args.ddim_steps * 1000:.1f} ms/step)")
    print(f"DDPM-{args.ddpm_steps}: {t_ddpm / per:8.2f} s/sample  ({t_ddpm / args.ddpm_steps * 1000:.1f} ms/step)")
    print(f"ratio DDPM/DDIM: {t_ddpm / t_ddim:.1f}x (step-count ratio {args.ddpm_steps / args.ddim_steps:.0f}x)")


if __name__ == "__main__":
    main()
