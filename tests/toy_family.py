"""A tiny test-only family: an MLP regressing a fixed random linear map on synthetic data.

Registered through ``MEDGEN_FAMILY_MODULES=tests.toy_family`` so subprocess tests can use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from medgen_cli.contract.config import FamilyConfig, StrictModel
from medgen_cli.contract.capabilities import Sampling
from medgen_cli.contract.family import Family
from medgen_cli.contract.options import FamilyOptions, SampleOptions
from medgen_cli.contract.samples import Samples, seeded_samples
from medgen_cli.families.latents import seeded_normal
from medgen_cli.contract.registry import FamilySpec, register


class ToyData(StrictModel):
    n_train: int = Field(64, ge=1)
    n_val: int = Field(16, ge=0)
    dim: int = Field(4, ge=1)
    noise: float = 0.01
    sleep: float = 0.0


class ToyModel(StrictModel):
    hidden: int = 16
    lr: float = 1e-2
    dropout: float = 0.0


class ToySampleOptions(SampleOptions):
    """The toy's outputs are short vectors: written as ``.npy`` only."""

    formats = ("npy",)
    format: tuple[str, ...] = ("npy",)


TOY_OPTIONS = FamilyOptions(sample=ToySampleOptions)


class ToyConfig(FamilyConfig):
    family: Literal["toy"] = "toy"
    data: ToyData = Field(default_factory=ToyData)
    model: ToyModel = Field(default_factory=ToyModel)


def _make_data(cfg: ToyData, n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(1234)
    w = torch.randn(cfg.dim, cfg.dim, generator=g)
    g2 = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cfg.dim, generator=g2)
    y = x @ w + cfg.noise * torch.randn(n, cfg.dim, generator=g2)
    return TensorDataset(x, y)


class ToyFamily(Family[ToyConfig], Sampling[ToySampleOptions]):
    name = "toy"
    ema_modules = ("net",)
    key_metric = "loss"
    key_mode = "min"

    def build(self, device: torch.device) -> None:
        c = self.cfg
        net = torch.nn.Sequential(
            torch.nn.Linear(c.data.dim, c.model.hidden), torch.nn.Tanh(), torch.nn.Dropout(c.model.dropout),
            torch.nn.Linear(c.model.hidden, c.data.dim),
        ).to(device)
        self.modules = {"net": net}
        self.optimizers = {"opt": torch.optim.Adam(net.parameters(), lr=c.model.lr)}
        self.seen = 0

    def train_dataset(self) -> TensorDataset:
        return _make_data(self.cfg.data, self.cfg.data.n_train, seed=1)

    def val_dataset(self) -> TensorDataset | None:
        return _make_data(self.cfg.data, self.cfg.data.n_val, seed=2) if self.cfg.data.n_val else None

    def train_step(self, batch: Any, ctx: Any) -> dict[str, float]:
        x, y = batch
        if self.cfg.data.sleep:
            import time

            time.sleep(self.cfg.data.sleep)
        with ctx.autocast():
            loss = torch.nn.functional.mse_loss(ctx.net("net")(x), y)
        ctx.backward(loss, "opt")
        gn = ctx.step("opt")
        self.seen += x.shape[0]
        return {"loss": float(loss.detach()), "grad_norm": gn}

    def validate(self, batches: Any, ctx: Any) -> dict[str, float]:
        net = ctx.eval_module("net")
        losses = [float(torch.nn.functional.mse_loss(net(x), y)) for x, y in batches]
        return {"loss": float(np.mean(losses))} if losses else {}

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = int(state.get("seen", 0))

    def on_train_end(self, ctx: Any) -> None:
        dump = os.environ.get("MEDGEN_TOY_DUMP")
        if dump:
            Path(dump).mkdir(parents=True, exist_ok=True)
            torch.save({k: v.cpu() for k, v in self.modules["net"].state_dict().items()},
                       Path(dump) / f"rank{ctx.rank}.pt")

    sample_options = ToySampleOptions

    def sample(self, opts: ToySampleOptions, ctx: Any) -> Samples:
        x = seeded_normal((self.cfg.data.dim,), range(opts.seed, opts.seed + opts.num))
        y = ctx.eval_module("net")(x.to(ctx.device)).cpu().numpy()
        return seeded_samples(y[:, None, None, :], opts.seed)  # each output as a 1 x dim "image"


register(FamilySpec(name="toy", config="tests.toy_family:ToyConfig", family="tests.toy_family:ToyFamily",
                    help="Test-only toy regression family.", options="tests.toy_family:TOY_OPTIONS"))
