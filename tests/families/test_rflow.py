"""Rectified flow (``noise.objective=rflow``): the sampler integrates the right ODE, a tiny model
learns, sampling/CFG/resume work as for DDPM, and mismatched samplers are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from medgen_cli.errors import MedgenError
from medgen_cli.families.diffusion import sampling
from medgen_cli.families.diffusion.config import NoiseScheduleConfig

REPO = Path(__file__).resolve().parents[2]
TINY_DF = REPO / "configs" / "tiny" / "diffusion.yaml"
RFLOW = NoiseScheduleConfig(objective="rflow")


class _Oracle(torch.nn.Module):
    """The exact rectified-flow velocity towards a point mass at ``c``: x_t = (1-s) c + s n with
    s = t/T, so v = c - n = (c - x_t) / s."""

    def __init__(self, c: torch.Tensor, T: int) -> None:
        super().__init__()
        self.c, self.T = c, T

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        s = (t.float() / self.T).view(-1, *[1] * (x.ndim - 1))
        return (self.c - x) / s


@pytest.mark.parametrize("steps", [1, 7, 30])
def test_rflow_sampler_reaches_the_target_of_an_exact_velocity(steps: int) -> None:
    sched = sampling.make_scheduler(RFLOW, "rflow")
    sched.set_timesteps(steps)
    c = torch.full((1, 2, 4, 4, 4), 0.7)
    noise = torch.randn(3, 2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    out = sampling.denoise(_Oracle(c, RFLOW.num_train_timesteps), sched, noise, None, None, None, 0)
    # Euler steps along a straight line are exact; float16 timesteps in MONAI cost ~1e-3
    torch.testing.assert_close(out, c.expand_as(out), atol=5e-3, rtol=0)


def test_forward_process_is_the_straight_line() -> None:
    sched = sampling.make_scheduler(RFLOW, "rflow")
    z, n = torch.ones(2, 1, 2, 2, 2), torch.zeros(2, 1, 2, 2, 2)
    t = torch.tensor([250.0, 1000.0])
    out = sched.add_noise(z, n, t)
    assert out[0].flatten()[0] == pytest.approx(0.75) and out[1].abs().max() == 0


def test_config_refuses_a_sampler_the_objective_cannot_use() -> None:
    from pydantic import ValidationError

    from medgen_cli.families.diffusion.config import DiffusionConfig

    with pytest.raises(ValidationError, match="cannot sample noise.objective=rflow"):
        DiffusionConfig.model_validate({"noise": {"objective": "rflow"}, "sample": {"scheduler": "ddim"}})


def test_samplers_must_match_the_objective() -> None:
    assert sampling.sampler_error(RFLOW, "ddim") is not None and "rflow" in sampling.sampler_error(RFLOW, "ddim")
    assert sampling.sampler_error(NoiseScheduleConfig(), "rflow") is not None
    assert sampling.sampler_error(RFLOW, "rflow") is None
    assert "ddpm, ddim, rflow" in sampling.sampler_error(RFLOW, "euler")
    assert sampling.default_sampler(RFLOW) == "rflow" and sampling.default_sampler(NoiseScheduleConfig()) == "ddim"


def test_rflow_unet_learns_a_two_point_distribution() -> None:
    """A tiny UNet trained with the family's objective maps noise onto one of two latents
    (+1 / -1 everywhere): samples end near ±1 after training, not before."""
    from monai.networks.nets import DiffusionModelUNet

    from medgen_cli.families.diffusion.family import DiffusionFamily
    from medgen_cli.families.diffusion.config import DiffusionConfig

    torch.manual_seed(0)
    unet = DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 16),
                              attention_levels=(False, False), num_res_blocks=1, norm_num_groups=8, num_head_channels=8)
    fam = DiffusionFamily(DiffusionConfig(noise=RFLOW))
    fam.scheduler = sampling.make_scheduler(RFLOW, "rflow")

    ctx = type("Ctx", (), {"autocast": lambda self: torch.autocast("cpu", enabled=False)})()
    opt = torch.optim.Adam(unet.parameters(), lr=3e-3)
    sched = sampling.make_scheduler(RFLOW, "rflow")
    sched.set_timesteps(10)

    def dist_to_modes() -> float:
        unet.eval()
        out = sampling.denoise(unet, sched, torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)),
                               None, None, None, 0)
        unet.train()
        return float((out.mean((1, 2, 3)).abs() - 1).abs().mean())

    before = dist_to_modes()
    losses = []
    for _ in range(150):
        sign = torch.where(torch.rand(16, 1, 1, 1) < 0.5, -1.0, 1.0)
        z = sign.expand(16, 1, 8, 8).contiguous()
        loss = fam._loss(unet, z, None, ctx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    after = dist_to_modes()
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:10]), losses[::10]
    assert after < 0.25 < before, (before, after)


@pytest.fixture(scope="module")
def rflow_run(tmp_path_factory: pytest.TempPathFactory, make_volumes: Callable[..., Path],
              train_ae: Callable[..., Path]) -> Path:
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    root = tmp_path_factory.mktemp("rflow")
    ae = train_ae(make_volumes(root / "data"), root / "runs", steps=4, extra=["trainer.val_every=4"])
    cfg = build_config("diffusion", TINY_DF, [f"autoencoder_run={ae}", f"output_dir={root / 'runs'}", "name=rf",
                                              "noise.objective=rflow", "conditioning.enabled=true",
                                              "trainer.max_steps=4", "trainer.val_every=2", "trainer.log_every=1"])
    run = train_from_config(cfg)
    assert run is not None
    return run


def test_rflow_run_samples_with_cfg_and_refuses_ddim(rflow_run: Path, metrics: Callable[..., list]) -> None:
    from medgen_cli.api import load_run

    assert metrics(rflow_run, "val/loss")
    run = load_run(rflow_run)
    a = np.asarray(run.sample(2, seed=3, steps=4))  # default sampler: rflow
    b = np.asarray(run.sample(2, seed=3, scheduler="rflow", steps=4))
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.shape == (2, 16, 16, 16) and np.isfinite(a).all()
    g1 = np.asarray(run.sample(1, seed=3, scheduler="rflow", steps=4, guidance_scale=1.0, class_label=1))
    g3 = np.asarray(run.sample(1, seed=3, scheduler="rflow", steps=4, guidance_scale=3.0, class_label=1))
    assert not np.allclose(g1, g3)
    with pytest.raises(MedgenError, match="noise.objective=rflow"):
        run.sample(1, scheduler="ddim", steps=2)


def test_rflow_resume_through_the_cli(rflow_run: Path) -> None:
    from typer.testing import CliRunner

    from medgen_cli.cli.app import app

    res = CliRunner().invoke(app, ["train", "diffusion", "--resume", str(rflow_run), "--set", "trainer.max_steps=6"])
    assert res.exit_code == 0, res.output
    ck = torch.load(rflow_run / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 6 and ck["config"]["noise"]["objective"] == "rflow"
    steps = [json.loads(line)["step"] for line in (rflow_run / "metrics.jsonl").read_text().splitlines()
             if "train/loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4, 5, 6]
