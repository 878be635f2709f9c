"""``sagan``: networks, one training step, FID-tracked best.pt, contract, sampling/interpolation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from medgen_cli.contract.context import TrainContext
from medgen_cli.api import load_run
from medgen_cli.engine.inference import infer_to_dir
from medgen_cli.config.build import build_config
from medgen_cli.engine.launch import train_from_config
from medgen_cli.errors import MedgenError
from medgen_cli.families.gan2d.synthetic import write_blob_folder
from medgen_cli.families.sagan.config import SAGANConfig
from medgen_cli.families.sagan.family import SAGANFamily
from medgen_cli.families.sagan.networks import SelfAttention

REPO = Path(__file__).resolve().parents[2]


def tiny_overrides(family: str, root: Path, **extra: object) -> list[str]:
    """The tiny preset as ``key=value`` overrides (the contract suite takes overrides only)."""
    def flat(d: dict, prefix: str = "") -> list[str]:
        out: list[str] = []
        for k, v in d.items():
            out += flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}={json.dumps(v)}"]
        return out

    data = yaml.safe_load((REPO / "configs" / "tiny" / f"{family}.yaml").read_text())
    data.pop("family")
    return flat(data) + [f"data.root={root}"] + [f"{k}={json.dumps(v)}" for k, v in extra.items()]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_blob_folder(tmp_path_factory.mktemp("blobs"), n=16, resolution=16)


def _ctx(fam: SAGANFamily, step: int = 0) -> TrainContext:
    return TrainContext(device=torch.device("cpu"), modules=fam.modules, wrapped=fam.modules,
                        optimizers=fam.optimizers, ema={}, scalers={}, amp_dtype=None, grad_clip=1.0,
                        global_step=step)


def test_tiny_preset() -> None:
    cfg = build_config("sagan", config_file=REPO / "configs" / "tiny" / "sagan.yaml")
    assert cfg.data.resolution == 16 and cfg.trainer.ema.enabled


def test_partial_trainer_section_keeps_family_defaults() -> None:
    cfg = build_config("sagan", overrides=["trainer.max_steps=3", "trainer.ema.decay=0.99"])
    t = cfg.trainer
    assert (t.batch_size, t.grad_clip, t.ema.enabled, t.lr_schedule.kind) == (16, 1.0, True, "step")


@pytest.mark.parametrize("loss", ["hinge", "bce"])
def test_train_step_changes_both_players_and_losses_are_finite(blobs: Path, loss: str) -> None:
    cfg = build_config("sagan", overrides=tiny_overrides("sagan", blobs) + [f"loss.type={loss}"])
    torch.manual_seed(0)
    fam = SAGANFamily(cfg)
    fam.build(torch.device("cpu"))
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in fam.modules.items()}
    batch = torch.stack([fam.train_dataset()[i] for i in range(4)])
    metrics = fam.train_step(batch, _ctx(fam))
    for key in ("loss/d", "loss/d_real", "loss/d_fake", "loss/g", "d/real", "d/fake", "grad_norm/d",
                "grad_norm/g", "share/d_real", "share/d_fake"):
        assert np.isfinite(metrics[key]), key
    assert metrics["share/d_real"] + metrics["share/d_fake"] == pytest.approx(1.0)
    for name, module in fam.modules.items():
        changed = [not torch.equal(a, b) for a, b in zip(before[name], module.parameters())]
        assert sum(changed) > len(changed) // 2, f"{name}: most weights should move"


def test_n_critic_updates_d_every_step_and_g_every_nth(blobs: Path) -> None:
    cfg = build_config("sagan", overrides=tiny_overrides("sagan", blobs) + ["loss.n_critic=2"])
    torch.manual_seed(0)
    fam = SAGANFamily(cfg)
    fam.build(torch.device("cpu"))
    batch = torch.stack([fam.train_dataset()[i] for i in range(4)])
    moved: dict[str, list[bool]] = {"generator": [], "discriminator": []}
    for step in range(4):
        before = {n: [p.detach().clone() for p in m.parameters()] for n, m in fam.modules.items()}
        metrics = fam.train_step(batch, _ctx(fam, step))
        for name, module in fam.modules.items():
            moved[name].append(any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters())))
        assert ("loss/g" in metrics) == (step >= 1)
    assert moved == {"generator": [False, True, False, True], "discriminator": [True] * 4}


def test_spectral_norm_and_attention() -> None:
    cfg = SAGANConfig(data={"resolution": 32}, model={"latent_dim": 8, "base_channels": 4, "max_channels": 16,
                                                      "attention_resolution": 16})
    fam = SAGANFamily(cfg)
    fam.build(torch.device("cpu"))
    for name, module in fam.modules.items():
        attn = [m for m in module.modules() if isinstance(m, SelfAttention)]
        assert len(attn) == 1, name
        convs = [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    # After enough power iterations the normalised weights have spectral norm 1 (independent SVD).
    gen = fam.modules["generator"].train()
    with torch.no_grad():
        for _ in range(30):
            gen(torch.randn(2, 8))
    w = gen.fc.weight.detach()
    assert float(torch.linalg.matrix_norm(w, ord=2)) == pytest.approx(1.0, abs=0.05)
    attn = next(m for m in gen.modules() if isinstance(m, SelfAttention))
    x = torch.randn(2, attn.query.in_channels, 16, 16)
    with torch.no_grad():
        assert torch.equal(attn(x), x)  # gate starts at zero
        attn.gamma.fill_(1.0)
        assert attn(x).shape == x.shape and not torch.equal(attn(x), x)
    with pytest.raises(MedgenError):
        SAGANFamily(SAGANConfig(data={"resolution": 16}, model={"attention_resolution": 32})).build(torch.device("cpu"))


def test_contract_sample_and_interpolate(contract_run: Callable[[str], Path], tmp_path: Path) -> None:
    run = contract_run("sagan")  # the shared suite's run (tests/families/test_contract.py)
    out = tmp_path / "samples"
    written = infer_to_dir(run, "sample", {"num": 5, "seed": 3, "format": "png"}, out, checkpoint="latest",
                           device="cpu").written
    assert all(p.is_file() for p in written.files) and len(written.files) == 5
    arr = load_run(run, checkpoint="latest").sample(5, seed=3).arrays
    assert arr.shape == (5, 1, 16, 16) and arr.dtype == np.float32 and 0 <= arr.min() <= arr.max() <= 1
    png = np.asarray(Image.open(out / "sample_00004.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(png, arr[1, 0], atol=0.5 / 255 + 1e-6)  # the PNG holds the 8-bit image
    # 16x16 samples are zoomed 8x in the preview (readable at a glance); the sample PNGs stay 16x16
    assert Image.open(out / "preview" / "grid.png").size == (3 * 128 + 2 * 2, 2 * 128 + 2)
    with pytest.raises(MedgenError):
        infer_to_dir(run, "sample", {"num": 5, "seed": 3}, out, checkpoint="latest")  # no silent overwrite
    again = tmp_path / "again"
    infer_to_dir(run, "sample", {"num": 5, "seed": 3, "batch_size": 2, "format": "npy"}, again, checkpoint="latest")
    np.testing.assert_allclose(np.load(again / "sample_00003.npy"), arr[0, 0], atol=1e-6)  # seed → same images
    with pytest.raises(MedgenError, match="do not take --truncation"):
        infer_to_dir(run, "sample", {"truncation": 0.5}, tmp_path / "t", checkpoint="latest")

    interp = tmp_path / "interp"
    infer_to_dir(run, "interpolate", {"seed_a": 3, "seed_b": 4, "steps": 5, "method": "slerp"}, interp,
                 checkpoint="latest")
    frames = load_run(run, checkpoint="latest").interpolate(3, 4, frames=5, method="slerp").arrays
    assert frames.shape == (5, 1, 16, 16) and len(list(interp.glob("frame_*.png"))) == 5
    np.testing.assert_allclose(frames[0], arr[0], atol=1e-5)  # t = 0 is the sample of seed_a
    np.testing.assert_allclose(frames[-1], arr[1], atol=1e-5)  # t = 1: seed_b = seed_a + 1
    gif = Image.open(interp / "preview" / "interpolation.gif")
    assert gif.n_frames == 5
    from medgen_cli.viz.strip import CAPTION_PX, SEPARATOR_PX

    # 16-px frames zoomed ×8 to the sample grids' 128-px tiles, a caption band below each.
    assert Image.open(interp / "preview" / "strip.png").size == (5 * 128 + 4 * SEPARATOR_PX, 128 + CAPTION_PX)


def _stub_tracker(monkeypatch: pytest.MonkeyPatch, calls: list[int]) -> None:
    """FID without Inception weights: a stand-in whose value is the mean absolute difference of
    image means (enough to exercise the schedule and best.pt)."""
    import medgen_cli.metrics.fid as fid

    class Stub:
        def __init__(self, real: torch.Tensor | None, device: object, weights: object = None, compute_kid: bool = True,
                     real_folder: Path | None = None) -> None:
            if real_folder is not None:  # data.root, read as `medgen eval fid` reads it
                real = torch.stack([torch.from_numpy(np.asarray(Image.open(p), np.float32) / 255)[None]
                                    for p in sorted(Path(real_folder).glob("*.png"))])
            assert real.shape[1:] == (1, 16, 16) and 0 <= real.min() and real.max() <= 1
            self.mean = float(real.mean())

        def __call__(self, fake: torch.Tensor) -> dict[str, float]:
            calls.append(fake.shape[0])
            return {"fid": abs(float(fake.mean()) - self.mean) * 100, "kid": 0.0}

    monkeypatch.setattr(fid, "FIDTracker", Stub)


def test_fid_schedule_writes_best(blobs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    _stub_tracker(monkeypatch, calls)
    cfg = build_config("sagan", overrides=tiny_overrides("sagan", blobs) + [
        "fid.enabled=true", "fid.schedule=[[4, 2], [100, 4]]", "trainer.val_every=1", "trainer.max_steps=8",
        f"output_dir={tmp_path}"])
    run = train_from_config(cfg)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    fid_steps = [r["step"] for r in lines if "val/fid" in r]
    assert fid_steps == [1, 3, 7]  # first val, then 2 steps later while <= 4, then 4 steps later
    assert calls == [16, 16, 16]
    assert (run / "checkpoints" / "best.pt").is_file()
    assert all("val/kid" in r for r in lines if "val/fid" in r)


def test_missing_fid_weights_warn_once_or_fail_with_require_fid(blobs: Path, tmp_path: Path, capfd) -> None:
    import warnings

    over = tiny_overrides("sagan", blobs) + ["fid.enabled=true", f"fid.weights={tmp_path / 'none.pth'}",
                                             "trainer.val_every=1", f"output_dir={tmp_path}"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run = train_from_config(build_config("sagan", overrides=over + ["name=nofid"]))
    assert not [w for w in record if issubclass(w.category, RuntimeWarning)]  # no raw Python warning
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "without FID" in line]
    assert len(lines) == 1 and lines[0].startswith("warning:") and "none.pth" in lines[0]
    assert not (run / "checkpoints" / "best.pt").exists() and (run / "checkpoints" / "latest.pt").is_file()
    with pytest.raises(MedgenError, match="require-fid"):
        train_from_config(build_config("sagan", overrides=over + ["name=strict", "fid.required=true"]))


def test_cli_train_sample_interpolate(blobs: Path, tmp_path: Path) -> None:
    """``medgen train sagan`` → ``medgen sample`` → ``medgen interpolate`` through Typer."""
    from typer.testing import CliRunner

    from medgen_cli.cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "sagan", "--config", str(REPO / "configs" / "tiny" / "sagan.yaml"),
                              "--set", f"data.root={blobs}", "--set", "trainer.max_steps=2",
                              "--output-dir", str(tmp_path), "--name", "cli"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "sagan" / "cli"
    res = runner.invoke(app, ["sample", str(run), "--num", "3", "--out", str(tmp_path / "s"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "s").glob("sample_*.png"))) == 3
    res = runner.invoke(app, ["interpolate", str(run), "--frames", "3", "--out", str(tmp_path / "i"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "i" / "preview" / "interpolation.gif").is_file() and (tmp_path / "i" / "preview" / "strip.png").is_file()
    res = runner.invoke(app, ["sample", str(run), "--truncation", "0.5", "--out", str(tmp_path / "t"), "--device", "cpu"])
    assert res.exit_code != 0 and isinstance(res.exception, (MedgenError, SystemExit))


def test_ema_ramps_up_so_early_ema_follows_the_generator(blobs: Path, tmp_path: Path) -> None:
    """With a fixed decay of 0.999 the EMA generator after a few steps is still the initial one
    (best.pt would be an untrained model); with StyleGAN2-ADA's ramp-up it follows G early."""
    def distance_to_online(rampup: str) -> float:
        over = tiny_overrides("sagan", blobs) + [f"output_dir={tmp_path}", f"name=ema{rampup}",
                                                 f"trainer.ema.rampup={rampup}", "trainer.max_steps=4"]
        run = train_from_config(build_config("sagan", overrides=over))
        ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
        online, ema = ck["modules"]["generator"], ck["ema"]["generator"]
        keys = [k for k in online if online[k].is_floating_point() and f"module.{k}" in ema]
        return sum(float((online[k] - ema[f"module.{k}"]).norm()) for k in keys)

    fixed, ramped = distance_to_online("null"), distance_to_online("0.05")
    assert fixed > 0
    assert ramped < 0.2 * fixed


def test_ramped_ema_decay_schedule() -> None:
    from medgen_cli.families.gan2d.family import ramped_ema

    update = ramped_ema(0.999, 0.05, batch=16)
    weights = []
    for n in (1, 100, 100_000):
        ema = [torch.zeros(1)]
        update(ema, [torch.ones(1)], torch.tensor(n))
        weights.append(float(ema[0]))  # the weight of the current generator: 1 - beta
    assert weights[0] > 0.99  # first updates: the EMA is the generator
    assert weights[1] == pytest.approx(1 - 0.5 ** (16 / (0.05 * 100 * 16)), rel=1e-6)
    assert weights[2] == pytest.approx(1 - 0.999, rel=1e-3)  # ramp over: the configured decay


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_leaky_discriminator_cannot_die(slope: float) -> None:
    """A critic whose last features are all negative: with ReLU (slope 0) it outputs one constant
    for every image and passes no gradient (the collapse a small CPU run showed: d/real == d/fake,
    grad_norm/d → 0); with a LeakyReLU it still tells images apart and passes gradients."""
    from medgen_cli.families.sagan.networks import Discriminator

    torch.manual_seed(0)
    disc = Discriminator(32, 1, 8, 32, None, slope=slope)
    with torch.no_grad():
        disc.blocks[-1].skip.bias.fill_(-1e3)  # push every final feature below zero
    x = torch.randn(2, 1, 32, 32, requires_grad=True)
    out = disc(x)
    out.sum().backward()
    dead = bool(torch.isclose(out[0], out[1])) and float(x.grad.abs().max()) == 0.0
    assert dead == (slope == 0.0)
