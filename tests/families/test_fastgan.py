"""``fastgan``: networks (shapes, SLE, spectral norm), the reconstructing discriminator learns,
one generator forward per step, contract (resume), sampling and interpolation."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from medgen_cli.api import load_run
from medgen_cli.config.build import build_config
from medgen_cli.contract.context import TrainContext
from medgen_cli.errors import MedgenError
from medgen_cli.families.fastgan.family import FastGANFamily
from medgen_cli.families.fastgan.networks import (Discriminator, Generator, NoisyUp, SkipExcitation, ZNoise,
                                                  quadrant, recon_targets)
from medgen_cli.families.gan2d.synthetic import write_blob_folder
from tests.contract import check_family_contract, read_metrics
from tests.families.test_sagan import tiny_overrides


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_blob_folder(tmp_path_factory.mktemp("blobs"), n=16, resolution=16)


def _family(root: Path, *extra: str) -> FastGANFamily:
    torch.manual_seed(0)
    fam = FastGANFamily(build_config("fastgan", overrides=tiny_overrides("fastgan", root) + list(extra)))
    fam.build(torch.device("cpu"))
    return fam


def _ctx(fam: FastGANFamily, step: int = 0) -> TrainContext:
    return TrainContext(device=torch.device("cpu"), modules=fam.modules, wrapped=fam.modules,
                        optimizers=fam.optimizers, ema={}, scalers={}, amp_dtype=None, grad_clip=None,
                        global_step=step)


@pytest.mark.parametrize("res", [16, 32, 64])
def test_network_shapes_and_skip_excitation(res: int) -> None:
    gen = Generator(z_dim=8, resolution=res, channels=3, base=4, cap=32)
    disc = Discriminator(resolution=res, channels=3, base=4, cap=32)
    with torch.no_grad():
        x = gen(torch.randn(2, 8))
    assert x.shape == (2, 3, res, res) and float(x.abs().max()) <= 1.0
    # SLE gates the maps of 32² and up, from a 16x smaller map (at least 4x4), as in the paper.
    assert sorted(int(k) for k in gen.sle) == [r for r in (32, 64) if r <= res]
    disc.eval()  # fixed BN statistics and spectral-norm vectors: two calls must agree
    logits, recons = disc(x, part=1)
    # 5x5 logits at full resolution and 5x5 at half (1x1 when the half-resolution view is 8x8)
    assert logits.shape == (2, 25 + (25 if res >= 32 else 1)) and torch.equal(disc(x), logits)
    for rec, target in zip(recons, recon_targets(x, 1)):
        assert rec.shape == target.shape == (2, 3, res // 2, res // 2)
    for module in (gen, disc):
        convs = [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)


def test_skip_excitation_gates_each_channel_in_zero_one() -> None:
    sle = SkipExcitation(c_small=3, c_big=5)
    small, big = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 32, 32)
    out = sle(small, big)
    gate = out / big
    # one gate per image and channel, constant over the map, strictly between 0 and 1
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-5)
    assert 0 < float(gate.detach().min()) and float(gate.detach().max()) < 1
    assert not torch.allclose(gate[0], gate[1])  # it depends on the image's small map


def test_quadrants_tile_the_image() -> None:
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).view(1, 2, 16, 16)
    top = torch.cat([quadrant(x, 0), quadrant(x, 1)], dim=-1)
    bottom = torch.cat([quadrant(x, 2), quadrant(x, 3)], dim=-1)
    assert torch.equal(torch.cat([top, bottom], dim=-2), x)


def test_discriminator_learns_to_reconstruct(blobs: Path) -> None:
    """The self-supervised part alone: D's L1 reconstruction of real images falls when trained."""
    fam = _family(blobs, "model.d_channels=8", "optimizer.lr_d=0.002")
    disc, opt = fam.modules["discriminator"], fam.optimizers["d"]
    real = torch.stack([fam.train_dataset()[i] for i in range(8)]) * 2 - 1
    losses = []
    for step in range(60):
        part = step % 4
        _, recons = disc(real, part=part)
        loss = sum(torch.nn.functional.l1_loss(r, t) for r, t in zip(recons, recon_targets(real, part)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:5])  # measured: 2.2 -> ~0.2


def test_train_step_moves_both_players_with_one_generator_forward(blobs: Path) -> None:
    fam = _family(blobs)
    gen = fam.modules["generator"]
    calls: list[int] = []
    gen.register_forward_hook(lambda *_: calls.append(1))
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in fam.modules.items()}
    batch = torch.stack([fam.train_dataset()[i] for i in range(4)])
    metrics = fam.train_step(batch, _ctx(fam))
    assert len(calls) == 1  # the D update's fakes serve the G update (the authors' loop)
    for key in ("loss/d", "loss/d_real", "loss/d_fake", "loss/recon", "loss/g", "d/real", "d/fake",
                "grad_norm/d", "grad_norm/g", "share/d_real", "share/d_fake", "share/recon"):
        assert np.isfinite(metrics[key]), key
    assert metrics["share/d_real"] + metrics["share/d_fake"] + metrics["share/recon"] == pytest.approx(1.0)
    for name, module in fam.modules.items():
        changed = [not torch.equal(a, b) for a, b in zip(before[name], module.parameters())]
        assert sum(changed) > len(changed) // 2, f"{name}: most weights should move"
    # recon_weight 0: a plain discriminator, whose reconstruction share is zero
    plain = _family(blobs, "loss.recon_weight=0")
    assert plain.train_step(batch, _ctx(plain))["share/recon"] == 0.0


def test_resolution_out_of_range_is_refused() -> None:
    with pytest.raises(MedgenError, match="fastgan needs data.resolution between 16 and 1024"):
        build_config("fastgan", overrides=["data.resolution=8"])


def test_contract_sample_and_interpolate(contract_run: Callable[[str], Path], tmp_path: Path) -> None:
    run = contract_run("fastgan")  # the shared suite's run (tests/families/test_contract.py)
    loaded = load_run(run, checkpoint="latest")
    arr = loaded.sample(5, seed=3).arrays
    assert arr.shape == (5, 1, 16, 16) and 0 <= arr.min() <= arr.max() <= 1
    np.testing.assert_allclose(load_run(run, checkpoint="latest").sample(2, seed=4).arrays, arr[1:3], atol=1e-6)
    frames = loaded.interpolate(3, 4, frames=5, method="slerp").arrays
    assert frames.shape == (5, 1, 16, 16)
    np.testing.assert_allclose(frames[0], arr[0], atol=1e-5)  # t = 0 is the sample of seed_a
    np.testing.assert_allclose(frames[-1], arr[1], atol=1e-5)  # t = 1: seed_b = seed_a + 1
    assert not np.allclose(frames[2], frames[0], atol=1e-3)


def test_channels_last_resumes_exactly_and_trains_like_the_default(blobs: Path, tmp_path: Path) -> None:
    """``trainer.channels_last`` (the CPU preset's layout) stores the 4-D weights NHWC, resumes
    bit-identically, and follows the default layout's training to float rounding."""
    over = tiny_overrides("fastgan", blobs)
    nhwc = check_family_contract("fastgan", [*over, "trainer.channels_last=true"], tmp_path / "nhwc", steps=4)
    nchw = check_family_contract("fastgan", over, tmp_path / "nchw", steps=4)
    state = torch.load(nhwc / "checkpoints" / "latest.pt", weights_only=True)["modules"]["generator"]
    convs = [v for v in state.values() if v.dim() == 4 and v.shape[1] > 1 and v.shape[2] > 1]
    assert convs and all(v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous()
                         for v in convs)
    a, b = read_metrics(nhwc), read_metrics(nchw)
    for step in a:
        for key in a[step]:
            if key.startswith("train/") and isinstance(a[step][key], float):
                assert a[step][key] == pytest.approx(b[step][key], rel=1e-3, abs=1e-5), (step, key)


def test_noise_off_keeps_the_network_and_on_adds_z_noise_where_the_authors_do() -> None:
    plain = Generator(z_dim=8, resolution=64, channels=1, base=4, cap=32)
    noisy = Generator(z_dim=8, resolution=64, channels=1, base=4, cap=32, noise=True)
    assert not any("noise" in k for k in plain.state_dict())  # old checkpoints load unchanged
    # the same weights (the noisy net's keys are the plain ones plus the noise's, blocks nested one deeper)
    renamed = {k.replace("ups.0.", "ups.0.block.").replace("ups.2.", "ups.2.block."): v
               for k, v in plain.state_dict().items()}
    missing, unexpected = noisy.load_state_dict(renamed, strict=False)
    assert not unexpected and all(".noise." in k for k in missing)
    # two-conv up-blocks (8² and 32²) get one ZNoise per conv; the one-conv blocks none
    assert [type(up).__name__ for up in noisy.ups] == ["NoisyUp", "Sequential", "NoisyUp", "Sequential"]
    assert [len(up.noise) for up in noisy.ups if isinstance(up, NoisyUp)] == [2, 2]
    z = torch.randn(3, 8)
    with torch.no_grad():
        noisy.eval(), plain.eval()
        # strength starts at 0: the same function as without noise (same initial weights otherwise)
        assert torch.allclose(noisy(z), plain(z), atol=1e-6)
        for m in noisy.modules():
            if isinstance(m, ZNoise):
                m.strength.fill_(1.0)
        a, b = noisy(z), noisy(z.clone())
        assert torch.equal(a, b)  # a function of z: a seed still fixes an image
        assert (a - plain(z)).abs().max() > 1e-3  # and the noise reaches the image


def test_z_noise_maps_are_standard_normal_pixels_independent_across_z() -> None:
    torch.manual_seed(0)
    noise = ZNoise(z_dim=256, res=16)
    maps = noise.maps(torch.randn(4000, 256))
    assert maps.shape == (4000, 1, 16, 16)
    px = maps.flatten(1)
    assert px.mean().abs() < 0.02 and (px.std(0) - 1).abs().max() < 0.06  # each pixel ~ N(0, 1) over z
    # two different latents give uncorrelated maps
    corr = torch.corrcoef(torch.stack([px[0::2].flatten(), px[1::2].flatten()]))[0, 1]
    assert corr.abs() < 0.02


def test_noise_strength_learns_in_a_train_step(blobs: Path) -> None:
    fam = _family(blobs, "model.noise=true")
    strengths = [m.strength for m in fam.modules["generator"].modules() if isinstance(m, ZNoise)]
    assert strengths
    batch = torch.stack([fam.train_dataset()[i] for i in range(4)])
    fam.train_step(batch, _ctx(fam))
    assert any(float(s) != 0.0 for s in strengths)  # the G update moved them off zero
