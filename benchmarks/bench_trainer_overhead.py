"""Trainer overhead: time per step of `medgen`'s shared trainer vs a bare PyTorch loop.

Same model (a small conv net), same synthetic data, same optimizer and batch size. The trainer
runs with its normal per-step work on: rich progress, TensorBoard + metrics.jsonl every
`--log-every` steps, LR scheduler, signal checks. Checkpoint writing at the end is excluded
(both loops are timed from their first to their last step).

    python -m benchmarks.bench_trainer_overhead [--steps 300] [--repeats 3]

Goal (issue 2): overhead <= 5%.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any, Literal

import torch
from pydantic import Field
from torch.utils.data import DataLoader, TensorDataset

from medgen_cli.config.base import FamilyConfig, StrictModel
from medgen_cli.families.base import Family
from medgen_cli.families.registry import FamilySpec, register

N, C, H = 512, 1, 32


def make_data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, C, H, H, generator=g)
    return TensorDataset(x, x.mean(dim=(1, 2, 3)).unsqueeze(1))


def make_net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(C, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3, padding=1, stride=2),
        torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 1),
    )


class BenchModel(StrictModel):
    lr: float = 1e-3


class BenchConfig(FamilyConfig):
    family: Literal["bench"] = "bench"
    model: BenchModel = Field(default_factory=BenchModel)


class BenchFamily(Family):
    name = "bench"
    t_first: float = 0.0
    t_last: float = 0.0
    steps: int = 0

    def build(self, device: torch.device) -> None:
        net = make_net().to(device)
        self.modules = {"net": net}
        self.optimizers = {"opt": torch.optim.Adam(net.parameters(), lr=self.cfg.model.lr)}

    def train_dataset(self) -> TensorDataset:
        return make_data()

    def train_step(self, batch: Any, ctx: Any) -> dict[str, float]:
        if BenchFamily.steps == 1:
            BenchFamily.t_first = time.perf_counter()  # exclude the first (warm-up) step
        x, y = batch
        with ctx.autocast():
            loss = torch.nn.functional.mse_loss(ctx.net("net")(x), y)
        ctx.backward(loss, "opt")
        ctx.step("opt")
        BenchFamily.steps += 1
        return {"loss": loss.item()}

    def on_train_end(self, ctx: Any) -> None:
        BenchFamily.t_last = time.perf_counter()


register(FamilySpec(name="bench", config="__main__:BenchConfig", family="__main__:BenchFamily", help="bench"))


def bare_loop(steps: int, batch: int) -> float:
    torch.manual_seed(0)
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(make_data(), batch_size=batch, shuffle=True, drop_last=True)
    done, t0 = 0, 0.0
    while done < steps:
        for x, y in loader:
            if done == 1:
                t0 = time.perf_counter()
            loss = torch.nn.functional.mse_loss(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            done += 1
            if done >= steps:
                break
    return (time.perf_counter() - t0) / (steps - 1)


def trainer_loop(steps: int, batch: int, log_every: int) -> float:
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    BenchFamily.steps = 0
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config("bench", overrides=[f"output_dir={tmp}", f"trainer.max_steps={steps}",
                                               f"trainer.batch_size={batch}", f"trainer.log_every={log_every}",
                                               "trainer.ckpt_every=100000", "trainer.val_every=100000"])
        train_from_config(cfg)
    return (BenchFamily.t_last - BenchFamily.t_first) / (steps - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    bare, trained = [], []
    for _ in range(args.repeats):  # interleaved, best-of-N, to be fair to both under noise
        bare.append(bare_loop(args.steps, args.batch))
        trained.append(trainer_loop(args.steps, args.batch, args.log_every))
    b, t = min(bare), min(trained)
    print(f"bare loop:      {b * 1e3:8.3f} ms/step (best of {args.repeats})")
    print(f"medgen trainer: {t * 1e3:8.3f} ms/step (best of {args.repeats})")
    print(f"ratio trainer/bare: {t / b:.3f}  (overhead {100 * (t / b - 1):+.1f}%, goal <= +5%)")


if __name__ == "__main__":
    main()
