"""One sparse-GAN training step vs the same architecture with dense Conv3d, at 64³ and ≤ 5% occupancy.

Each variant runs in its own subprocess with glibc's mmap threshold fixed at 64 KiB, so freed
tensors go back to the OS and the resident size follows live memory. After one warm-up step
(which creates Adam's state) the peak-RSS mark is reset (/proc/self/clear_refs) and the timed
steps run; "step peak" is that peak minus the resident size before them: the memory one training
step needs on top of the weights and optimizer state (identical in both variants, also shown).
Goals (issue 7): sparse ≤ ¼ of dense memory and ≤ ½ of its time.

    python benchmarks/bench_sparse_gan_step.py [--size 64] [--batch-size 2] [--steps 2] [--backend torch]
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
from torch import nn
import torch.nn.functional as F


def real_volumes(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Solid spheres filling about 3% of the grid (values in [0.5, 1])."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
    r = 0.19 * size
    vols = [(np.linalg.norm(g - rng.uniform(r, size - r, 3), axis=-1) < r) * rng.uniform(0.5, 1.0) for _ in range(batch)]
    return torch.from_numpy(np.stack(vols)[:, None].astype(np.float32))


class DenseGenerator(nn.Module):
    """The sparse generator's layers with dense ops: no pruning, occupancy as a soft gate."""

    def __init__(self, latent: int, init: int, channels: list[int]) -> None:
        super().__init__()
        self.init, self.c0 = init, channels[0]
        self.fc = nn.Linear(latent, init**3 * channels[0])
        self.blocks = nn.ModuleList()
        for a, b in zip(channels[:-1], channels[1:]):
            self.blocks.append(nn.ModuleDict({
                "up": nn.ConvTranspose3d(a, b, 2, 2, bias=False), "bn1": nn.BatchNorm3d(b),
                "conv": nn.Conv3d(b, b, 3, padding=1, bias=False), "bn2": nn.BatchNorm3d(b), "occ": nn.Conv3d(b, 1, 1)}))
        self.out = nn.Conv3d(channels[-1], 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.fc(z), 0.2).view(z.shape[0], self.c0, self.init, self.init, self.init)
        p = None
        for blk in self.blocks:
            x = F.leaky_relu(blk["bn1"](blk["up"](x)), 0.2)
            x = F.leaky_relu(blk["bn2"](blk["conv"](x)), 0.2)
            p = torch.sigmoid(blk["occ"](x))
            x = x * p
        return torch.sigmoid(self.out(x)) * p


class DenseDiscriminator(nn.Module):
    def __init__(self, channels: list[int], k: int = 3) -> None:
        super().__init__()
        layers, c = [], 1
        for ch in channels:
            layers += [nn.Conv3d(c, ch, k, 2, padding=k // 2 if k == 3 else 0), nn.LeakyReLU(0.2)]
            c = ch
        self.convs, self.head = nn.Sequential(*layers), nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(x).mean(dim=(2, 3, 4))).squeeze(1)


def dense_step(gen, disc, opt_g, opt_d, real, latent):
    b = real.shape[0]
    with torch.no_grad():
        fake = gen(torch.randn(b, latent))
    loss = disc(fake).mean() - disc(real).mean()
    alpha = torch.rand(b, 1, 1, 1, 1)
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x).sum(), x, create_graph=True)
    gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    opt_d.zero_grad()
    (loss + 10 * gp).backward()
    opt_d.step()
    opt_g.zero_grad()
    (-disc(gen(torch.randn(b, latent))).mean()).backward()
    opt_g.step()


def _status_mb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM (peak resident size) to the current size


def worker(kind: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    from medgen_cli.families.sparse_gan.config import SparseGANConfig

    init = args.size // 16
    cfg = SparseGANConfig(data={"voxel_size": args.size, "threshold": 0.1},
                          generator={"init_size": init, "max_voxels": int(0.05 * args.size**3)},
                          loss={"n_critic": 1}, sparse={"backend": args.backend})
    real = real_volumes(args.batch_size, args.size)
    if kind == "dense":
        gen = DenseGenerator(cfg.generator.latent_dim, init, cfg.generator.channels)
        disc = DenseDiscriminator(cfg.discriminator.channels)
        opt_g, opt_d = torch.optim.Adam(gen.parameters(), 1e-4), torch.optim.Adam(disc.parameters(), 1e-4)
        step = lambda: dense_step(gen, disc, opt_g, opt_d, real, cfg.generator.latent_dim)  # noqa: E731
    else:
        from medgen_cli.engine.context import TrainContext
        from medgen_cli.families.sparse_gan.family import SparseGANFamily, collate_sparse

        fam = SparseGANFamily(cfg)
        fam.build(torch.device("cpu"))
        ctx = TrainContext(device=torch.device("cpu"), modules=fam.modules, wrapped=dict(fam.modules),
                           optimizers=fam.optimizers, ema={}, scalers={}, amp_dtype=None, grad_clip=None)
        batch = collate_sparse([{"image": v} for v in real], 0.1, 100)
        step = lambda: fam.train_step(batch, ctx)  # noqa: E731
    step()  # warm-up: Adam state, allocator pools
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
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--backend", default="torch", choices=["torch", "minkowski", "auto"])
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
