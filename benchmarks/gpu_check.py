"""Measure the GPU presets: s/step and peak GPU memory at 64^3 with their bf16 AMP, and AMP vs fp32.

For ``configs/gpu/autoencoder.yaml`` and then ``configs/gpu/diffusion.yaml`` (on that autoencoder
run) the script trains each preset through medgen's own trainer (``build_config`` +
``train_from_config``) on ``--volumes`` synthetic 64^3 volumes it writes to a temporary folder,
once at batch 2 (the batch of the original RTX 3090 figures in REFERENCES.md) and once at the
preset's own batch. Nothing else of the preset changes except data, step count, per-step logging
and ``loss.adv_start_step=0`` for the autoencoder: after step 5,000 of its 50,000 every step also
trains the patch discriminator, so that is the step that sets the time and the memory peak (below
24^3 the discriminator cannot take the volume; see :func:`autoencoder_extra`).

* s/step: the run logs every step (``trainer.log_every=1``) and the differences between the
  ``time`` stamps of consecutive ``metrics.jsonl`` records are the wall time of whole trainer
  steps (data, forward, backward, optimizer, EMA, logging); their median over the ``--steps``
  steps after ``--warmup`` is reported (``harness.seconds_per_step``; stamps are kept to 1 ms).
* peak memory: ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` over the whole run
  (reset before it), and the process's peak RSS.
* AMP vs fp32: the trained run is loaded (its online weights) and one fixed batch of
  2 volumes goes through the family's own ``validate`` (the autoencoder's L1 of its posterior-mean
  reconstruction; diffusion's loss with fixed noise and timesteps) and through the network
  (the reconstruction; the UNet's prediction on fixed noisy latents), once in fp32 (TF32 off) and
  once under bf16 autocast with the same weights and input. See ``TOLERANCE`` for the bounds.

Run on a GPU machine from the repository root (four runs of 14 steps and two fixed-batch checks,
meant to take well under 10 minutes; not yet run on a GPU)::

    python -m benchmarks.gpu_check --json docs/gpu_check.json

Exit code 1 when a check is outside ``TOLERANCE`` or a run logged no step times. Without CUDA it
prints one line and exits 0. ``--device cpu --size 16 --steps 2`` runs the same logic on the CPU
at a tiny size (bf16 autocast on the CPU) as a smoke test.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import harness
from benchmarks.harness import REPO

PRESETS = {"autoencoder": REPO / "configs" / "gpu" / "autoencoder.yaml",
           "diffusion": REPO / "configs" / "gpu" / "diffusion.yaml"}

#: RTX 3090, 64^3, 1,000 volumes (REFERENCES.md): minutes per epoch and GB at batch 2 and 4,
#: turned into s/step as epoch seconds / (1,000 / batch) steps.
REFERENCE = {
    "autoencoder": {2: {"s_per_step": 15 * 60 / 500, "gb": 12}, 4: {"s_per_step": 10 * 60 / 250, "gb": 20}},
    "diffusion": {2: {"s_per_step": 8 * 60 / 500, "gb": 10}, 4: {"s_per_step": 5 * 60 / 250, "gb": 18}},
}

#: bf16 keeps 8 significant bits: each rounding is off by at most u = 2^-8 ~ 3.9e-3 (relative).
#: Under autocast, convolutions and matmuls read bf16 inputs and weights but accumulate in fp32,
#: and GroupNorm, softmax and the losses run in fp32, so each of the ~30-40 layers of these
#: networks adds an independent error of order u to the activations; such errors add in
#: quadrature, sqrt(40) * u ~ 0.025 relative (L2) at the output. The output bound is twice that.
#: A loss is a mean over ~10^5-10^6 voxels of an error against a target that does not change, so
#: the independent per-voxel errors mostly cancel and only a systematic shift is left: its bound
#: is tighter. Larger errors mean a layer that overflows or loses range in bf16, not rounding.
TOLERANCE = {"output_rel_l2": 0.05, "loss_rel": 0.02}


def no_cuda_line() -> str | None:
    """The one line printed when the GPU run is asked for and no CUDA device is visible."""
    import torch

    if torch.cuda.is_available():
        return None
    return (f"gpu_check: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}): nothing "
            "measured; run it on a GPU machine, or add --device cpu --size 16 --steps 2 for the CPU smoke run")


def overrides(args: argparse.Namespace, data: Path, out: Path, name: str, batch: int) -> list[str]:
    """What changes in a preset for a measured run: data, device, step count, per-step logging
    (the size is the autoencoder's; diffusion takes it from its autoencoder run)."""
    return [f"data.root={data}", f"output_dir={out}", f"name={name}", f"trainer.device={args.device}",
            f"trainer.batch_size={batch}", "trainer.log_every=1"]


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


def measured_run(family: str, sets: list[str], args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """Train the preset of ``family`` with ``sets`` and return its run folder and measurements."""
    import torch

    cuda = args.device.startswith("cuda")
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    cfg = harness.build(family, PRESETS[family], sets, steps=args.warmup + args.steps + 1)
    trained = harness.train(cfg)
    # Records of steps warmup+1 .. warmup+steps+1: the --steps steps after the warm-up.
    rate = harness.seconds_per_step(trained.run, after=args.warmup + 1)
    gb = 2.0**30
    out = {"batch": cfg.trainer.batch_size, "amp": cfg.trainer.amp, "steps_timed": args.steps,
           "s_per_step": float("nan") if rate is None else rate,
           "peak_allocated_gb": torch.cuda.max_memory_allocated() / gb if cuda else None,
           "peak_reserved_gb": torch.cuda.max_memory_reserved() / gb if cuda else None,
           "peak_rss_gb": peak_rss_gb(), "run_wall_s": round(60.0 * trained.minutes, 2)}
    return trained.run, out


def rel_l2(a: Any, b: Any) -> float:
    """||a - b|| / ||b|| over all elements (fp32)."""
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def network_output(run: Any, x: Any) -> Any:
    """The family's network output on ``x``: the autoencoder's reconstruction, or the UNet's
    prediction on fixed noisy latents (the posterior means, encoded in fp32, so both precisions
    see the same UNet input)."""
    import torch

    fam = run.family
    if fam.name == "autoencoder":
        return fam.reconstruct_tensor(run.ctx.eval_module("autoencoder"), x)
    with torch.autocast(device_type=x.device.type, enabled=False):
        z = run.ctx.eval_module("autoencoder").encode(x)[0].float() * fam.scale_factor
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(z.shape, generator=gen).to(z.device)
    steps = fam.cfg.noise.num_train_timesteps
    t = torch.linspace(0.2, 0.8, z.shape[0], device=z.device) * steps
    t = t if fam.cfg.noise.objective == "rflow" else t.long()
    noisy = fam.scheduler.add_noise(original_samples=z, noise=noise, timesteps=t)
    return run.ctx.eval_module("unet")(noisy, t).float()


def fixed_batch(run: Any, x: Any, amp: Any) -> tuple[float, Any]:
    """(the family's validation loss, its network output) on ``x`` with ``amp`` (None: fp32)."""
    import contextlib

    import torch

    from medgen_cli.contract.context import TrainContext

    fam = run.family
    ctx = TrainContext(device=x.device, modules=fam.modules, wrapped=fam.modules, optimizers={}, ema={},
                       scalers={}, amp_dtype=amp, grad_clip=None)
    key = "l1" if fam.name == "autoencoder" else "loss"
    # The autoencoder's validate has no autocast of its own (its training step has): the outer
    # context gives it the training step's precision; diffusion's uses ctx.autocast like training.
    cast = torch.autocast(device_type=x.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    torch.manual_seed(0)
    with torch.no_grad(), cast:
        loss = float(fam.validate([{"image": x}], ctx)[key])
        out = network_output(run, x)
    return loss, out


def amp_vs_fp32(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The fixed-batch comparison of one trained run (same weights, same 2 volumes)."""
    import torch

    from medgen_cli.engine.run_loading import load_run

    # The online weights: in a few steps they have left their initialisation, while an EMA copy
    # has barely moved from the first step's (and the UNet's output convolution starts at zero).
    run = load_run(run_dir, checkpoint="latest", device=args.device, use_ema=False)
    if run.family.name == "diffusion":
        # Its validation encodes a *sample* of the posterior, mean + sigma * eps. Under CPU
        # autocast sigma is bf16 and eps is drawn in bf16, a different draw from the fp32 one
        # (CUDA autocast runs exp in fp32), which is randomness, not rounding: both precisions
        # get the posterior mean instead (this loaded copy only).
        ae = run.ctx.eval_module("autoencoder")
        ae.sampling = lambda z_mu, z_sigma: z_mu
    ds = run.family.train_dataset()
    x = torch.stack([ds[i]["image"] for i in range(2)]).to(run.ctx.device)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # a true fp32 reference
    try:
        loss32, out32 = fixed_batch(run, x, None)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    loss16, out16 = fixed_batch(run, x, torch.bfloat16)
    res = {"batch": int(x.shape[0]), "loss_fp32": loss32, "loss_bf16": loss16,
           "loss_rel_err": abs(loss16 - loss32) / max(abs(loss32), 1e-12), "output_rel_l2": rel_l2(out16, out32)}
    res["within_tolerance"] = (res["loss_rel_err"] <= TOLERANCE["loss_rel"]
                               and res["output_rel_l2"] <= TOLERANCE["output_rel_l2"])
    return res


def check_preset(family: str, args: argparse.Namespace, data: Path, out: Path, extra: list[str]) -> tuple[Path, dict]:
    """Both batches of one preset, its AMP check and the reference figures beside them."""
    import yaml

    preset_batch = int(yaml.safe_load(PRESETS[family].read_text())["trainer"]["batch_size"])
    runs, last = [], None
    for role, batch in (("reference batch", 2), ("preset batch", preset_batch)):
        sets = [*overrides(args, data, out, f"{family}-b{batch}", batch), *extra]
        last, m = measured_run(family, sets, args)
        ref = REFERENCE[family].get(batch)
        runs.append({"role": role, **m, "rtx3090": ref})
        print(f"{family:11s} batch {batch:2d}: {m['s_per_step']:.3f} s/step (median of {m['steps_timed']}), peak "
              + (f"{m['peak_allocated_gb']:.2f} GB allocated / {m['peak_reserved_gb']:.2f} GB reserved"
                 if m["peak_reserved_gb"] is not None else f"RSS {m['peak_rss_gb']:.2f} GB")
              + (f"   [RTX 3090: ~{ref['s_per_step']:.2f} s/step, ~{ref['gb']} GB]" if ref else ""), flush=True)
    assert last is not None
    check = amp_vs_fp32(last, args)
    print(f"{family:11s} bf16 vs fp32 on a fixed batch: loss rel. error {check['loss_rel_err']:.2e} "
          f"(<= {TOLERANCE['loss_rel']}), output rel. L2 {check['output_rel_l2']:.2e} (<= {TOLERANCE['output_rel_l2']})"
          f" -> {'ok' if check['within_tolerance'] else 'OUTSIDE the tolerance'}", flush=True)
    return last, {"config": str(PRESETS[family].relative_to(REPO)), "overrides": extra, "runs": runs,
                  "amp_vs_fp32": check}


def autoencoder_extra(size: int) -> list[str]:
    """The discriminator on from step 0 where the preset's 3-layer PatchDiscriminator takes the
    volume: at 16^3 its last strided conv sees 1 voxel, where BatchNorm in training mode fails
    ("Expected more than 1 value per channel"); 24^3 is the smallest size that works, so smaller
    smoke runs keep the preset's warm-up (no discriminator within their few steps)."""
    return [f"data.size=[{size},{size},{size}]", *(["loss.adv_start_step=0"] if size >= 24 else [])]


def device_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                            "python": platform.python_version()}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(device_name=props.name, device_memory_gb=props.total_memory / 2**30)
    else:
        info.update(device_name=f"cpu ({harness.cpu_model()})", device_memory_gb=None, threads=torch.get_num_threads())
    return info


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda[:N], or cpu for the smoke run")
    ap.add_argument("--size", type=int, default=64, help="voxels per side")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=3, help="steps not timed at the start of each run")
    ap.add_argument("--volumes", type=int, default=16, help="training volumes (at least the largest batch, 16)")
    ap.add_argument("--json", type=Path, default=REPO / "runs" / "gpu_check.json")
    ap.add_argument("--keep", type=Path, default=None, help="keep data and runs in this folder (default: a temp dir)")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    if args.device.startswith("cuda"):
        line = no_cuda_line()
        if line is not None:
            print(line)
            return 0
    from benchmarks.bench_ldm_overhead import make_data

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medgen-gpu-check-") as tmp:
        work = args.keep or Path(tmp)
        data = make_data(work / "data", args.volumes, args.size)
        ae_run, ae = check_preset("autoencoder", args, data, work / "runs", autoencoder_extra(args.size))
        _, dm = check_preset("diffusion", args, data, work / "runs", [f"autoencoder_run={ae_run}"])
        dm["overrides"] = ["autoencoder_run=<the autoencoder run at the preset batch above>"]
    timing = ("median of the differences of consecutive metrics.jsonl time stamps (trainer.log_every=1) "
              "after the warm-up steps")
    result = {**device_info(args.device), "timing": timing, "size": args.size, "steps": args.steps,
              "warmup": args.warmup, "volumes": args.volumes, "tolerance": TOLERANCE,
              "presets": {"autoencoder": ae, "diffusion": dm}, "wall_s": round(time.perf_counter() - t0, 1)}
    harness.write_json(args.json, result)
    print(f"wrote {args.json} ({result['wall_s']:.0f} s)")
    presets = result["presets"].values()
    ok = all(p["amp_vs_fp32"]["within_tolerance"] for p in presets)
    return 0 if ok and all(math.isfinite(r["s_per_step"]) for p in presets for r in p["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
