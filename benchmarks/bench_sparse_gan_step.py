"""One sparse-GAN training step vs the dense baseline (``generator.kind=dense``: ConvTranspose3d of
the same widths on the full grid, the classic 3D-GAN) with the same critic and loss, at 64³ and ≤ 5%
occupancy.

Each variant runs in its own subprocess with glibc's mmap threshold fixed at 64 KiB, so freed
tensors go back to the OS and the resident size follows live memory. After one warm-up step
(which creates Adam's state) the peak-RSS mark is reset (/proc/self/clear_refs) and the timed
steps run; "step peak" is that peak minus the resident size before them: the memory one training
step needs on top of the weights and optimizer state (identical in both variants, also shown).
Goals (issue 7): sparse ≤ ¼ of dense memory and ≤ ½ of its time.

    python -m benchmarks.bench_sparse_gan_step [--size 64] [--batch-size 2] [--steps 2] [--backend torch]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch


def real_volumes(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Solid spheres filling about 3% of the grid (values in [0.5, 1])."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
    r = 0.19 * size
    vols = [(np.linalg.norm(g - rng.uniform(r, size - r, 3), axis=-1) < r) * rng.uniform(0.5, 1.0) for _ in range(batch)]
    return torch.from_numpy(np.stack(vols)[:, None].astype(np.float32))


def _status_mb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM (peak resident size) to the current size


def worker(kind: str, args: argparse.Namespace) -> dict:
    """One training step of the family itself: ``generator.kind`` sparse or dense, the same critic
    (``--critic``, default the family's default) and the same loss."""
    torch.manual_seed(0)
    from medgen_cli.engine.context import TrainContext
    from medgen_cli.families.sparse_gan.config import SparseGANConfig
    from medgen_cli.families.sparse_gan.family import SparseGANFamily, collate_sparse

    init = args.size // 16
    critic = "dense" if kind == "dense" else args.critic  # the seed's sparse critic has no R1
    cfg = SparseGANConfig(data={"voxel_size": args.size, "threshold": 0.1},
                          generator={"kind": kind, "init_size": init, "max_voxels": int(0.05 * args.size**3)},
                          discriminator={"kind": critic}, sparse={"backend": args.backend},
                          loss={"n_critic": 1, "r1_weight": 10.0 if critic == "dense" else 0.0,
                                **({"r1_interval": args.r1_interval} if args.r1_interval else {})})
    real = real_volumes(args.batch_size, args.size)
    fam = SparseGANFamily(cfg)
    fam.build(torch.device("cpu"))
    ctx = TrainContext(device=torch.device("cpu"), modules=fam.modules, wrapped=dict(fam.modules),
                       optimizers=fam.optimizers, ema={}, scalers={}, amp_dtype=None, grad_clip=None)
    batch = collate_sparse([{"image": v} for v in real], 0.1, 100)

    def step() -> None:  # the trainer's step counter advances, so lazy R1 runs every r1_interval-th step
        fam.train_step(batch, ctx)
        ctx.global_step += 1

    step()  # warm-up: Adam state, allocator pools
    ctx.global_step = 0
    base = _status_mb("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = (time.perf_counter() - t0) / args.steps
    return {"kind": kind, "sec_per_step": dt, "peak_mb": _status_mb("VmHWM") - base, "resident_mb": base,
            "occupancy": float((real > 0.1).float().mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="timed steps (a multiple of loss.r1_interval, 4: lazy R1 in its share)")
    ap.add_argument("--backend", default="torch", choices=["torch", "minkowski", "auto"])
    ap.add_argument("--r1-interval", type=int, default=None, help="loss.r1_interval of both (default: the family's)")
    ap.add_argument("--critic", default="dense", choices=["dense", "sparse"],
                    help="discriminator.kind of the sparse model (the dense baseline always has a dense critic)")
    ap.add_argument("--worker", choices=["sparse", "dense"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    res = {}
    for kind in ("sparse", "dense"):
        cmd = [sys.executable, __file__, "--worker", kind] + sys.argv[1:]
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        res[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        r = res[kind]
        print(f"{kind:6s}: {r['sec_per_step']:.2f} s/step, step peak +{r['peak_mb']:.0f} MB "
              f"(resident before the step: {r['resident_mb']:.0f} MB)")
    s, d = res["sparse"], res["dense"]
    print(f"{args.size}³, batch {args.batch_size}, real occupancy {100 * s['occupancy']:.1f}%, backend {args.backend}")
    print(f"sparse/dense time ratio:   {s['sec_per_step'] / d['sec_per_step']:.3f}  (goal ≤ 0.5)")
    print(f"sparse/dense memory ratio: {s['peak_mb'] / max(d['peak_mb'], 1e-9):.3f}  (goal ≤ 0.25)")


if __name__ == "__main__":
    main()
