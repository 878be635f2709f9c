"""``stylegan2``: networks against references, regularizers with gradients, one training step,
contract, truncation, style mixing, sampling and interpolation in W."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from medgen_cli.contract.context import TrainContext
from medgen_cli.engine.inference import infer_to_dir
from medgen_cli.config.build import build_config
from medgen_cli.engine.run_loading import load_run
from medgen_cli.families.gan2d import losses
from medgen_cli.families.gan2d.synthetic import write_blob_folder
from medgen_cli.families.stylegan2.config import StyleGAN2Config
from medgen_cli.families.stylegan2.family import StyleGAN2Family
from medgen_cli.families.stylegan2.networks import EqualLinear, ModulatedConv2d, minibatch_std

REPO = Path(__file__).resolve().parents[2]


def tiny_overrides(root: Path, extra: list[str] | None = None) -> list[str]:
    """The tiny preset as ``key=value`` overrides (the contract suite takes overrides only)."""
    def flat(d: dict, prefix: str = "") -> list[str]:
        out: list[str] = []
        for k, v in d.items():
            out += flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}={json.dumps(v)}"]
        return out

    data = yaml.safe_load((REPO / "configs" / "tiny" / "stylegan2.yaml").read_text())
    data.pop("family")
    return flat(data) + [f"data.root={root}", *(extra or [])]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_blob_folder(tmp_path_factory.mktemp("blobs"), n=16, resolution=16)


def _family(root: Path, extra: list[str] | None = None) -> StyleGAN2Family:
    torch.manual_seed(0)
    fam = StyleGAN2Family(build_config("stylegan2", overrides=tiny_overrides(root, extra)))
    fam.build(torch.device("cpu"))
    return fam


def _ctx(fam: StyleGAN2Family, step: int = 0) -> TrainContext:
    return TrainContext(device=torch.device("cpu"), modules=fam.modules, wrapped=fam.modules,
                        optimizers=fam.optimizers, ema={}, scalers={}, amp_dtype=None, grad_clip=None,
                        global_step=step)


def test_auto_values() -> None:
    fam = StyleGAN2Family(StyleGAN2Config())
    assert fam.r1_gamma == pytest.approx(0.0002 * 64**2 / 8)  # ADA auto config at 64², batch 8
    decay = fam.ema_decay(0.999)
    assert decay ** (2500 / 8) == pytest.approx(0.5)  # half-life of 2,500 images
    fixed = StyleGAN2Family(StyleGAN2Config(model={"ema_halflife_images": None}))
    assert fixed.ema_decay(0.9) == 0.9


def test_modulated_conv_matches_per_sample_reference() -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(3, 5, 3, w_dim=4)
    x, w = torch.randn(2, 3, 8, 8), torch.randn(2, 4)
    out = conv(x, w)
    for i in range(2):
        style = conv.affine(w[i:i + 1])[0]
        weight = conv.weight[0] * conv.scale * style.view(1, 3, 1, 1)
        weight = weight / weight.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        torch.testing.assert_close(out[i:i + 1], F.conv2d(x[i:i + 1], weight, padding=1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("up,demodulate", [(False, True), (True, True), (False, False)])
def test_modulated_conv_equals_grouped_per_sample_weights_with_gradients(up: bool, demodulate: bool) -> None:
    """The non-fused path (modulate input, one conv, demodulate output) that runs fast on CPU is
    StyleGAN2's grouped per-sample-weight convolution, values and gradients (R1/path length)."""
    torch.manual_seed(1)
    conv = ModulatedConv2d(6, 4, 3, w_dim=5, demodulate=demodulate, up=up)
    x, w = torch.randn(3, 6, 5, 5, requires_grad=True), torch.randn(3, 5, requires_grad=True)
    ours = conv(x, w)
    ref = conv.grouped_reference(x, w)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * g).sum(), [x, w, conv.weight])
    refs = torch.autograd.grad((ref * g).sum(), [x, w, conv.weight])
    for a, b in zip(grads, refs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_equalized_lr_and_mapping_multiplier() -> None:
    torch.manual_seed(0)
    layer = EqualLinear(256, 64, lr_mul=0.01)
    assert float(layer.weight.detach().std()) == pytest.approx(100.0, rel=0.05)  # stored ×1/lr_mul
    effective = layer.weight.detach() * layer.scale
    assert float(effective.std()) == pytest.approx(1 / math.sqrt(256), rel=0.05)  # runtime He scale


def test_minibatch_std_matches_reference() -> None:
    x = torch.randn(8, 3, 4, 4)
    out = minibatch_std(x, group=4)
    groups = x.view(4, 2, 3, 4, 4)  # sample i is in column i % 2
    ref = groups.var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    for i in range(8):
        assert torch.allclose(out[i, 3], ref[i % 2].expand(4, 4))


def test_mbstd_group_reaches_the_discriminator(blobs: Path) -> None:
    """``model.mbstd_group`` sets D's group: with 8 the std feature is one value over the batch of 8."""
    fam = _family(blobs, ["model.mbstd_group=8"])
    disc = fam.modules["discriminator"]
    seen: list[torch.Tensor] = []
    disc.conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, -1].detach()))
    x = torch.randn(8, 1, 16, 16)
    disc(x)
    assert torch.allclose(seen[0], seen[0][0, 0, 0].expand_as(seen[0]))  # one group: the same value everywhere
    disc.mbstd_group = 4
    disc(x)
    assert not torch.allclose(seen[1], seen[1][0, 0, 0].expand_as(seen[1]))


def test_train_step_changes_both_players_with_regularizers(blobs: Path) -> None:
    fam = _family(blobs, ["loss.r1_interval=1", "loss.pl_interval=1", "loss.r1_gamma=1.0", "augment.ada_p_init=0.5"])
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in fam.modules.items()}
    batch = torch.stack([fam.train_dataset()[i] for i in range(4)])
    metrics = fam.train_step(batch, _ctx(fam, step=0))
    for key in ("loss/d", "loss/g", "loss/r1", "stats/r1_penalty", "loss/pl", "stats/pl_penalty", "stats/pl_length",
                "d/real", "d/fake", "grad_norm/d", "grad_norm/g", "share/r1", "share/pl", "aug/p"):
        assert math.isfinite(metrics[key]), key
    assert metrics["stats/r1_penalty"] > 0 and metrics["stats/pl_length"] > 0 and fam.pl_mean > 0
    assert metrics["loss/r1"] == pytest.approx(metrics["stats/r1_penalty"] * 0.5)  # γ/2 · interval 1
    for name, module in fam.modules.items():
        changed = [not torch.equal(a, b) for a, b in zip(before[name], module.parameters())]
        assert sum(changed) > len(changed) // 2, f"{name}: most weights should move"


def test_r1_and_path_length_gradients_reach_the_weights(blobs: Path) -> None:
    fam = _family(blobs)
    gen, disc = fam.modules["generator"], fam.modules["discriminator"]
    real = (torch.stack([fam.train_dataset()[i] for i in range(4)]) * 2 - 1).requires_grad_(True)
    penalty = losses.r1_penalty(disc(fam.augment(real)), real)
    penalty.backward()
    missing = [n for n, p in disc.named_parameters() if p.grad is None]
    assert missing == ["out.bias"]  # ∇ₓD does not depend on the final bias; every other weight gets R1 grads
    # Weights get non-zero R1 gradients (biases act only through leaky-ReLU kinks, so theirs can be 0).
    assert all(float(p.grad.abs().sum()) > 0 for p in disc.parameters() if p.dim() > 1)
    images, ws = gen(torch.randn(2, 8), return_ws=True)
    lengths = losses.path_lengths(images, ws)
    lengths.sum().backward()
    grads = [p.grad for p in gen.synthesis.parameters() if p.requires_grad]
    assert sum(g is not None and float(g.abs().sum()) > 0 for g in grads) > len(grads) // 2
    assert gen.mapping.net[0].weight.grad is not None  # through w into the mapping network


def test_style_mixing_and_truncation(blobs: Path) -> None:
    fam = _family(blobs)
    gen = fam.modules["generator"].eval()
    z, z2 = torch.randn(3, 8), torch.randn(3, 8)
    ws = gen.ws_from_z(z, mix_z=z2, mix_cutoff=2)
    assert ws.shape == (3, gen.num_ws, 8)
    torch.testing.assert_close(ws[:, 1], gen.mapping(z))
    torch.testing.assert_close(ws[:, 2], gen.mapping(z2))
    with torch.no_grad():
        gen.mapping.w_avg.normal_()
        img = fam.generate(gen, torch.randn(3, 8), truncation=0.0)  # ψ = 0: every sample is w_avg
    assert torch.allclose(img[0], img[1], atol=1e-6) and torch.allclose(img[0], img[2], atol=1e-6)


def test_ada_p_is_saved_and_restored(blobs: Path) -> None:
    fam = _family(blobs, ["augment.ada_p_init=0.3"])
    fam.augment.observe_real(torch.ones(4))
    state = fam.state_dict()
    other = _family(blobs)
    other.load_state_dict(state)
    assert other.augment.ada.p == pytest.approx(0.3) and other.augment.state_dict() == fam.augment.state_dict()


def test_contract_sample_and_interpolate(contract_run: Callable[[str], Path], tmp_path: Path) -> None:
    run = contract_run("stylegan2")  # the shared suite's run (tests/families/test_contract.py)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ps = [r["train/aug/p"] for r in lines if "train/loss/d" in r]
    assert len(ps) == 4 and ps[0] == 0.5 and ps[-1] != 0.5  # p moved at step 4; the contract saw it resume
    out = tmp_path / "samples"
    written = infer_to_dir(run, "sample", {"num": 4, "seed": 7, "truncation": 0.7, "format": "npy"}, out,
                           checkpoint="latest", device="cpu").written
    assert all(p.is_file() for p in written.files)
    arr = np.stack([np.load(p) for p in written.files])
    assert arr.shape == (4, 16, 16) and np.isfinite(arr).all()
    interp = tmp_path / "interp"
    infer_to_dir(run, "interpolate", {"seed_a": 7, "seed_b": 8, "frames": 4, "truncation": 0.7, "format": "npy"},
                 interp, checkpoint="latest", device="cpu")
    frames = np.stack([np.load(interp / f"frame_{i:03d}.npy") for i in range(4)])
    np.testing.assert_allclose(frames[0], arr[0], atol=1e-5)   # lerp in W: endpoints are the samples
    np.testing.assert_allclose(frames[-1], arr[1], atol=1e-5)
    assert Image.open(interp / "preview" / "interpolation.gif").n_frames == 4


def test_seeded_noise_is_per_image_and_reproducible(blobs: Path) -> None:
    """Sampling gives each image fresh noise from its own seed, as training does (not one shared
    map): same seed → same image whatever the batch; same z with another seed → other detail."""
    fam = _family(blobs)
    gen = fam.modules["generator"].eval()
    with torch.no_grad():
        for layer in gen.synthesis.layers:
            layer.noise_strength.fill_(0.5)
        z = torch.randn(1, 8).repeat(3, 1)
        batch = fam.generate(gen, z, seeds=[3, 4, 5])
        alone = fam.generate(gen, z[:1], seeds=[4])
        const = fam.generate(gen, z)
    torch.testing.assert_close(batch[1:2], alone)
    assert (batch[0] - batch[1]).abs().max() > 1e-3 and (batch[1] - batch[2]).abs().max() > 1e-3
    assert torch.allclose(const[0], const[1])  # seedless: the fixed maps, identical for equal z
    maps = gen.synthesis.seeded_noise([3, 4])
    assert [m.shape[-1] for m in maps] == [layer.noise_const.shape[-1] for layer in gen.synthesis.layers]
    assert all(abs(float(m.std()) - 1.0) < 0.5 for m in maps[3:])
