"""The medgen trainer's step time vs a bare MONAI-tutorial loop, same nets and data (goal: <= 5%).

For each stage (``autoencoder``, then ``diffusion`` on that autoencoder) both loops train the same
networks on the same NIfTI volumes with the same batch size:

* engine: ``train_from_config`` (progress bar, metrics.jsonl/TensorBoard every ``log_every`` steps,
  LR scheduler, resumable sampler, ``ctx.step`` gradient norms) with EMA, AMP and augmentation off
  and validation/checkpoints outside the timed steps;
* bare: the MONAI 3D LDM tutorial's loop (``AutoencoderKL`` + ``PatchDiscriminator`` with L1, KL and
  LSGAN patch losses; ``LatentDiffusionInferer`` + ``DDPMScheduler`` with MSE on the noise).

Per-step time is taken between the starts of consecutive steps (the engine: entries into the
family's ``train_step``, so everything the trainer does between steps counts; the bare loop: the
top of its loop body), averaged over the steps after ``--warmup``; set-up, data caching and
network construction are outside. Engine and bare runs alternate, each ``--repeats`` times, and
the fastest mean is kept (the machine may be shared).

    python -m benchmarks.bench_ldm_overhead                  # 32^3 volumes, CPU
    python -m benchmarks.bench_ldm_overhead --size 64 --device cuda
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F


def make_data(root: Path, n: int, size: int) -> Path:
    from medgen_cli.io import save_nifti

    rng = np.random.default_rng(0)
    g = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
    for i in range(n):
        c = rng.uniform(size * 0.3, size * 0.7, 3)
        vol = (np.linalg.norm(g - c, axis=-1) < size * rng.uniform(0.15, 0.3)).astype(np.float32)
        save_nifti(vol, root / "train" / f"v{i:03d}.nii.gz", overwrite=True)
    (root / "manifest.json").write_text(json.dumps([]))
    return root


def common_overrides(args: argparse.Namespace, out: Path) -> list[str]:
    big = 10 ** 6
    return [f"output_dir={out}", f"trainer.batch_size={args.batch}", f"trainer.device={args.device}",
            "trainer.amp='off'", "trainer.ema.enabled=false", f"trainer.val_every={big}", f"trainer.ckpt_every={big}",
            f"trainer.image_every={big}", "trainer.log_every=10", "data.flip=false", "data.cache_rate=1.0"]


def ae_overrides(args: argparse.Namespace, data: Path) -> list[str]:
    return [f"data.root={data}", f"data.size=[{args.size}, {args.size}, {args.size}]", "loss.adv_start_step=0"]


def engine_times(family: str, overrides: list[str], steps: int) -> list[float]:
    """Start times of each ``train_step`` call of a ``train_from_config`` run of ``steps`` steps."""
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.families.registry import get_spec

    cls = get_spec(family).family_class()
    original = cls.train_step
    stamps: list[float] = []

    def timed(self: Any, batch: Any, ctx: Any) -> Any:
        stamps.append(time.perf_counter())
        return original(self, batch, ctx)

    cls.train_step = timed
    try:
        train_from_config(build_config(family, overrides=[*overrides, f"trainer.max_steps={steps}",
                                                          f"name={family}-{steps}-{time.time_ns()}"]))
    finally:
        cls.train_step = original
    return stamps


def loader(args: argparse.Namespace, data: Path) -> Any:
    from medgen_cli.data.volumes import list_volume_split, make_volume_dataset

    ds = make_volume_dataset(list_volume_split(data)[0], (args.size,) * 3, cache_rate=1.0)
    return torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=False)


def bare_autoencoder(args: argparse.Namespace, data: Path) -> Callable[[int], float]:
    """MONAI tutorial loop for AutoencoderKL + PatchDiscriminator (fresh nets for every call)."""
    from monai.losses import PatchAdversarialLoss
    from monai.networks.nets import PatchDiscriminator

    from medgen_cli.config.build import build_config
    from medgen_cli.families.autoencoder.family import build_autoencoder, kl_loss

    cfg = build_config("autoencoder", overrides=ae_overrides(args, data))
    dl = loader(args, data)
    dev = torch.device(args.device)

    def run(steps: int) -> list[float]:
        ae = build_autoencoder(cfg).to(dev)
        disc = PatchDiscriminator(spatial_dims=3, num_layers_d=3, channels=32, in_channels=1, out_channels=1).to(dev)
        opt_g, opt_d = torch.optim.Adam(ae.parameters(), lr=1e-4), torch.optim.Adam(disc.parameters(), lr=1e-4)
        adv = PatchAdversarialLoss(criterion="least_squares")
        stamps: list[float] = []
        epoch_loss = 0.0
        for batch in timed_batches(dl, steps, stamps):
            x = batch["image"].to(dev)
            opt_g.zero_grad(set_to_none=True)
            recon, z_mu, z_sigma = ae(x)
            logits_fake = disc(recon.contiguous().float())[-1]
            loss_g = F.l1_loss(recon.float(), x) + 1e-6 * kl_loss(z_mu, z_sigma) + 0.01 * adv(
                logits_fake, target_is_real=True, for_discriminator=False)
            loss_g.backward()
            opt_g.step()
            opt_d.zero_grad(set_to_none=True)
            loss_d = 0.01 * 0.5 * (adv(disc(recon.contiguous().detach())[-1], target_is_real=False, for_discriminator=True)
                                   + adv(disc(x.contiguous().detach())[-1], target_is_real=True, for_discriminator=True))
            loss_d.backward()
            opt_d.step()
            epoch_loss += loss_g.item()  # as the tutorial (and a sync point, like the engine's metrics)
        return stamps

    return run


def bare_diffusion(args: argparse.Namespace, data: Path, ae_run: Path) -> Callable[[int], float]:
    """MONAI tutorial loop: LatentDiffusionInferer + DDPMScheduler + MSE on the noise."""
    from monai.inferers import LatentDiffusionInferer
    from monai.networks.nets import DiffusionModelUNet
    from monai.networks.schedulers import DDPMScheduler

    from medgen_cli.engine.run_loading import load_run

    ae = load_run(ae_run, device=args.device).ctx.eval_module("autoencoder")
    dl = loader(args, data)
    dev = torch.device(args.device)

    with torch.no_grad():
        first = next(iter(dl))["image"].to(dev)
        latent_shape = ae.encode_stage_2_inputs(first).shape[1:]

    def run(steps: int) -> list[float]:
        unet = DiffusionModelUNet(spatial_dims=3, in_channels=3, out_channels=3, num_res_blocks=1, channels=(32, 64, 64),
                                  attention_levels=(False, True, True), num_head_channels=(0, 64, 64)).to(dev)
        scheduler = DDPMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015, beta_end=0.0195)
        inferer = LatentDiffusionInferer(scheduler, scale_factor=1.0)
        opt = torch.optim.Adam(unet.parameters(), lr=1e-4)
        stamps: list[float] = []
        epoch_loss = 0.0
        for batch in timed_batches(dl, steps, stamps):
            x = batch["image"].to(dev)
            opt.zero_grad(set_to_none=True)
            noise = torch.randn((x.shape[0], *latent_shape), device=dev)
            t = torch.randint(0, 1000, (x.shape[0],), device=dev).long()
            pred = inferer(inputs=x, autoencoder_model=ae, diffusion_model=unet, noise=noise, timesteps=t)
            loss = F.mse_loss(pred.float(), noise.float())
            loss.backward()
            opt.step()
            epoch_loss += loss.item()
        return stamps

    return run


def timed_batches(dl: Any, steps: int, stamps: list[float]) -> Any:
    """Batches of ``dl`` (cycling over epochs) until ``steps`` were taken, recording in ``stamps``
    the time each step starts (the top of the loop body, as the tutorial's loop)."""
    while True:
        for batch in dl:
            stamps.append(time.perf_counter())
            yield batch
            if len(stamps) == steps:
                return


def step_time(stamps: list[float], warmup: int) -> float:
    """Mean seconds per step between the starts of steps ``warmup`` .. last."""
    return (stamps[-1] - stamps[warmup]) / (len(stamps) - 1 - warmup)


def compare(engine: Callable[[int], list[float]], bare: Callable[[int], list[float]], steps: int, warmup: int,
            repeats: int) -> tuple[float, float]:
    """Fastest mean step time of each loop over ``repeats`` alternating runs."""
    best_e = best_b = float("inf")
    for _ in range(repeats):
        best_e = min(best_e, step_time(engine(steps), warmup))
        best_b = min(best_b, step_time(bare(steps), warmup))
    return best_e, best_b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16, help="steps per run (the last one's time is not counted)")
    ap.add_argument("--warmup", type=int, default=2, help="steps not counted at the start")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--diffusion-mult", type=int, default=8, help="diffusion steps are cheaper: run this many times more")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stages", default="autoencoder,diffusion")
    args = ap.parse_args()
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    tmp = Path(tempfile.mkdtemp(prefix="medgen-bench-"))
    data = make_data(tmp / "data", args.volumes, args.size)
    runs = tmp / "runs"
    base = common_overrides(args, runs)
    # The bare diffusion loop encodes with the full tutorial autoencoder: the engine's AE run here.
    ae_run = train_from_config(build_config("autoencoder", overrides=[*base, *ae_overrides(args, data),
                                                                      "trainer.max_steps=1", "name=ae-for-diffusion"]))
    rows = []
    stages = args.stages.split(",")
    if "autoencoder" in stages:
        eng, bare = compare(lambda n: engine_times("autoencoder", [*base, *ae_overrides(args, data)], n),
                            bare_autoencoder(args, data), args.steps, args.warmup, args.repeats)
        rows.append(("autoencoder", eng, bare))
    if "diffusion" in stages:
        over = [*base, f"autoencoder_run={ae_run}", "scale_factor=1.0"]
        eng, bare = compare(lambda n: engine_times("diffusion", over, n), bare_diffusion(args, data, ae_run),
                            args.steps * args.diffusion_mult, args.warmup, args.repeats)
        rows.append(("diffusion", eng, bare))
    print(f"{args.size}^3 volumes, batch {args.batch}, device {args.device}, torch threads {torch.get_num_threads()}, "
          f"mean step time after {args.warmup} warm-up steps of {args.steps} (diffusion x{args.diffusion_mult}), "
          f"best of {args.repeats}")
    for stage, eng, bare in rows:
        print(f"{stage:12s} engine {eng * 1000:8.1f} ms/step   bare MONAI loop {bare * 1000:8.1f} ms/step   "
              f"overhead {100 * (eng / bare - 1):+5.1f}%  (goal <= +5%)")


if __name__ == "__main__":
    main()
