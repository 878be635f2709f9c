"""One SAGAN / StyleGAN2 training step: measured time vs the FLOP-bound time on this CPU.

For each family and config (the default YAML and the CPU preset under ``configs/cpu/``) this
builds the family, counts the FLOPs of one full ``train_step`` (D and G updates, lazy
regularizers amortised over their intervals) with ``torch.utils.flop_counter``'s formulas,
times a few steps after a warm-up, and prints

    measured s/step, FLOP-bound s/step (= FLOPs / --peak-gflops), ratio (goal <= 3x)

``--peak-gflops`` defaults to 178, the fp32 matmul rate this 2-core AVX2 CPU reaches. With
``--profile`` the top operators of one step (torch.profiler) are printed as well. Run by hand:

    python -m benchmarks.bench_gan2d_step [--family sagan stylegan2 fastgan] [--configs default cpu] [--steps 2]
        [--threads 2] [--fused]   # --fused: StyleGAN2's previous grouped modulated conv ("before")
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def _ctx(fam: Any, step: int) -> Any:
    from medgen_cli.engine.context import TrainContext

    return TrainContext(device=torch.device("cpu"), modules=fam.modules, wrapped=fam.modules,
                        optimizers=fam.optimizers, ema={}, scalers={}, amp_dtype=None,
                        grad_clip=fam.cfg.trainer.grad_clip, global_step=step)


def build(family: str, config: Path | None) -> Any:
    from medgen_cli.config.build import build_config
    from medgen_cli.families.registry import get_spec

    cfg = build_config(family, config_file=config, overrides=["data.root=/nonexistent"])
    fam = get_spec(family).family_class()(cfg)
    fam.build(torch.device("cpu"))
    return fam


class _Flops:
    """Counts FLOPs with ``torch.utils.flop_counter``'s per-operator formulas through a dispatch
    mode (``FlopCounterMode`` itself also tracks modules, whose hooks fail on ``no_grad`` forwards
    of parameters)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        outer = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                fn = flop_registry.get(func._overloadpacket)
                if fn is not None:
                    outer.total += fn(*args, **kwargs, out_val=out)
                return out

        self.total = 0
        self.mode = Mode()


def step_classes(fam: Any) -> list[tuple[int, float]]:
    """(representative global step, weight) per kind of step: StyleGAN2's lazy R1 and path-length
    steps come every ``r1_interval``/``pl_interval`` steps, so one period is averaged exactly."""
    loss = getattr(fam.cfg, "loss", None)
    r1 = getattr(loss, "r1_interval", 1) if getattr(fam, "r1_gamma", 0) else 0
    pl = getattr(loss, "pl_interval", 1) if getattr(loss, "pl_weight", 0) else 0
    period = math.lcm(r1 or 1, pl or 1)
    kinds: dict[tuple[bool, bool], list[int]] = {}
    for s in range(1, period + 1):
        kinds.setdefault((bool(r1) and s % r1 == 0, bool(pl) and s % pl == 0), []).append(s)
    return [(steps[0], len(steps) / period) for steps in kinds.values()]


def step_flops(fam: Any, batch: torch.Tensor, classes: list[tuple[int, float]]) -> float:
    """Average FLOPs of one step over the step kinds."""
    total = 0.0
    for step, weight in classes:
        counter = _Flops()
        with counter.mode:
            fam.train_step(batch, _ctx(fam, step))
        total += weight * counter.total
    return total


def time_steps(fam: Any, batch: torch.Tensor, reps: int, classes: list[tuple[int, float]]) -> tuple[float, float]:
    """(wall s, CPU s) of an average step: each step kind timed ``reps`` times after a warm-up.
    CPU time (all threads) is reported because the machine is shared: wall time then measures
    the other users as much as this code."""
    wall = cpu = 0.0
    for step, weight in classes:
        fam.train_step(batch, _ctx(fam, step))
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(reps):
            fam.train_step(batch, _ctx(fam, step))
        wall += weight * (time.perf_counter() - t0) / reps
        cpu += weight * (time.process_time() - c0) / reps
    return wall, cpu


def profile(fam: Any, batch: torch.Tensor) -> None:
    from torch.profiler import ProfilerActivity, profile as prof

    with prof(activities=[ProfilerActivity.CPU]) as p:
        fam.train_step(batch, _ctx(fam, 0))
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", nargs="+", default=["sagan", "stylegan2", "fastgan"])
    ap.add_argument("--configs", nargs="+", default=["default", "cpu"], help="default and/or cpu (configs/cpu/<family>.yaml)")
    ap.add_argument("--steps", type=int, default=2, help="timed windows (a window = the lazy-regularizer interval)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peak-gflops", type=float, default=178.0, help="fp32 peak of the whole machine")
    ap.add_argument("--cores", type=int, default=2, help="cores the peak is for")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--fused", action="store_true",
                    help="StyleGAN2 'before': the grouped per-sample-weight modulated convolution it used to run")
    args = ap.parse_args()
    if args.fused:
        from medgen_cli.families.stylegan2.networks import ModulatedConv2d

        ModulatedConv2d.forward = ModulatedConv2d.grouped_reference  # type: ignore[method-assign]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for family in args.family:
        for which in args.configs:
            config = None if which == "default" else REPO / "configs" / "cpu" / f"{family}.yaml"
            which = which + ("/fused" if args.fused and family == "stylegan2" else "")
            fam = build(family, config)
            c = fam.cfg
            batch = torch.rand(c.trainer.batch_size, c.data.channels, c.data.resolution, c.data.resolution)
            classes = step_classes(fam)
            flops = step_flops(fam, batch, classes)
            wall, cpu = time_steps(fam, batch, args.steps, classes)
            bound = flops / (args.peak_gflops * 1e9)
            # CPU seconds vs the bound in core-seconds (the peak is for all the machine's cores):
            # the wall ratio on an idle machine if the threads scale.
            cpu_ratio = cpu / (bound * args.cores)
            rows.append((family, which, c.trainer.batch_size, flops / 1e9, wall, cpu, bound, cpu_ratio))
            print(f"{family:10s} {which:8s} batch {c.trainer.batch_size:3d}  {flops / 1e9:8.1f} GFLOP/step  "
                  f"wall {wall:7.3f} s  CPU {cpu:7.3f} s  bound {bound:7.3f} s  wall ratio {wall / bound:5.2f}x  "
                  f"CPU ratio {cpu_ratio:5.2f}x", flush=True)
            if args.profile:
                profile(fam, batch)
    print(f"\n{args.threads} thread(s); peak {args.peak_gflops:g} GFLOP/s fp32 on {args.cores} cores "
          f"({args.peak_gflops / args.cores:g} per core); goal: ratio <= 3x. CPU ratio = CPU seconds / (bound x "
          f"{args.cores} cores): the wall ratio on an idle machine if the threads scale; the wall ratio also "
          "measures the other users of this shared machine. Load average now: "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'family':10s} {'config':8s} {'batch':>5s} {'GFLOP':>8s} {'wall s':>8s} {'CPU s':>8s} {'bound s':>8s} "
          f"{'wall x':>7s} {'CPU x':>6s}")
    for f, w, b, g, wl, cp, bd, cr in rows:
        print(f"{f:10s} {w:8s} {b:5d} {g:8.1f} {wl:8.3f} {cp:8.3f} {bd:8.3f} {wl / bd:6.2f}x {cr:5.2f}x")

if __name__ == "__main__":
    main()
