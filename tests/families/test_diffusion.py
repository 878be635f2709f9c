"""``diffusion`` family: tiny latent DDPM on a tiny autoencoder run (16^3, CPU, seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from medgen_cli.families.latents import seeded_normal
from medgen_cli.errors import MedgenError

REPO = Path(__file__).resolve().parents[2]
TINY_DF = REPO / "configs" / "tiny" / "diffusion.yaml"


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory: pytest.TempPathFactory, make_volumes: Callable[..., Path],
           train_ae: Callable[..., Path]) -> Path:
    root = tmp_path_factory.mktemp("ldm")
    data = make_volumes(root / "data")
    return train_ae(data, root / "runs", steps=4, extra=["trainer.val_every=4"])


def df_overrides(ae_run: Path, out: Path, *extra: str) -> list[str]:
    return [f"autoencoder_run={ae_run}", f"output_dir={out}", "trainer.log_every=1", *extra]


def train_df(ae_run: Path, out: Path, *extra: str) -> Path:
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    run = train_from_config(build_config("diffusion", TINY_DF, df_overrides(ae_run, out, *extra)))
    assert run is not None
    return run


@pytest.fixture(scope="module")
def cond_run(ae_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_df(ae_run, tmp_path_factory.mktemp("df"), "name=cond", "conditioning.enabled=true",
                    "trainer.max_steps=4", "trainer.val_every=2")


def test_noise_defaults_are_the_monai_tutorial_ones() -> None:
    from medgen_cli.families.diffusion.config import DiffusionConfig

    n = DiffusionConfig().noise
    assert (n.num_train_timesteps, n.schedule, n.beta_start, n.beta_end) == (1000, "scaled_linear_beta", 0.0015, 0.0195)


@pytest.mark.parametrize("value, message", [
    (None, "autoencoder_run is not set"),
    ("{tmp}/nowhere", "is not a run directory"),
])
def test_missing_autoencoder_run_is_a_clear_error(tmp_path: Path, value: str | None, message: str) -> None:
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    over = [f"output_dir={tmp_path}"] + ([] if value is None else [f"autoencoder_run={value.format(tmp=tmp_path)}"])
    with pytest.raises(MedgenError, match=message):
        train_from_config(build_config("diffusion", TINY_DF, over))


def test_wrong_family_autoencoder_run_is_a_clear_error(tmp_path: Path, cond_run: Path) -> None:
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    with pytest.raises(MedgenError, match="is a 'diffusion' run, not an autoencoder run"):
        train_from_config(build_config("diffusion", TINY_DF, df_overrides(cond_run, tmp_path)))


def test_diffusion_loss_falls(tmp_path: Path, ae_run: Path, metrics: Callable[..., list]) -> None:
    run = train_df(ae_run, tmp_path, "trainer.max_steps=60", "trainer.val_every=1000", "trainer.image_every=1000",
                   "optimizer.lr=0.003", "data.flip=false")
    loss = metrics(run, "train/loss")
    assert len(loss) == 60
    # epsilon-prediction MSE starts near 1 (an untrained UNet predicts ~0); learning pushes it down
    assert np.mean(loss[-15:]) < 0.85 * np.mean(loss[:5]), loss


def test_scale_factor_stored_and_used_at_sampling(tmp_path: Path, ae_run: Path, cond_run: Path) -> None:
    from medgen_cli.engine.run_loading import load_run
    from medgen_cli.families.diffusion import sampling

    ck = torch.load(cond_run / "checkpoints" / "latest.pt", weights_only=True)
    stored = ck["family_state"]["scale_factor"]
    # Independent estimate from the posterior of the first training batch (batch_size 2):
    # z = mu + sigma * eps, so Var(z) = Var(mu) + E[sigma^2].
    ae = load_run(ae_run, device="cpu")
    ds = ae.family.train_dataset()
    x = torch.stack([ds[i]["image"] for i in range(2)])
    with torch.no_grad():
        mu, sigma = ae.ctx.eval_module("autoencoder").encode(x)
    expected = 1.0 / float(torch.sqrt(mu.var() + sigma.pow(2).mean()))
    assert stored == pytest.approx(expected, rel=0.05)

    loaded = load_run(cond_run, device="cpu")
    fam = loaded.family
    assert fam.scale_factor == stored
    # The decoder must receive latents / scale_factor: the same DDIM latents, two scale factors.
    seen: list[torch.Tensor] = []
    autoencoder = loaded.ctx.eval_module("autoencoder")
    original = autoencoder.decode_stage_2_outputs
    autoencoder.decode_stage_2_outputs = lambda z: (seen.append(z.clone()), original(z))[1]  # type: ignore[method-assign]
    unet = loaded.ctx.eval_module("unet")
    sched = fam._sampler("ddim", 3)
    # class 0 and the "no class" token, each with flip code 0 (data.flip is on: class · 8 + code)
    z = sampling.denoise(unet, sched, seeded_normal(fam.latent_shape(), [5]),
                         torch.tensor([0]), fam.num_classes * fam.flip_states, 2.0, 5)
    for s in (stored, 2.0 * stored):
        fam.scale_factor = s
        fam.generate(unet, autoencoder, torch.device("cpu"), 1, 5, "ddim", 3, 2.0, 0)
        torch.testing.assert_close(seen[-1], z / s)


def test_resume_keeps_the_scale_factor(contract_run: Callable[[str], Path]) -> None:
    full = contract_run("diffusion")  # the shared suite's run (tests/families/test_contract.py)
    a = torch.load(full / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(full.parent / "split" / "checkpoints" / "latest.pt", weights_only=True)
    assert a["family_state"]["scale_factor"] == b["family_state"]["scale_factor"]


def test_ddim_is_reproducible_and_batch_independent(cond_run: Path) -> None:
    from medgen_cli.api import load_run

    run = load_run(cond_run)
    a = run.sample(3, seed=7, scheduler="ddim", steps=3, batch_size=2)
    b = run.sample(3, seed=7, scheduler="ddim", steps=3, batch_size=3)
    c = run.sample(3, seed=8, scheduler="ddim", steps=3)
    # Each sample's class is its seed's, (seed + i) mod 2.
    assert a.arrays.shape == (3, 1, 16, 16, 16) and a.seeds == [7, 8, 9] and a.labels == [1, 0, 1]
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a, c)
    # guidance changes a conditional sample; the class label is honoured
    g1 = run.sample(1, seed=7, scheduler="ddim", steps=3, guidance_scale=1.0, class_label=1)
    g3 = run.sample(1, seed=7, scheduler="ddim", steps=3, guidance_scale=3.0, class_label=1)
    assert not np.allclose(g1, g3)
    # without --guidance-scale a run samples the conditional distribution it learned (guidance 1):
    # guidance 3 halved the coverage of anatomical shapes (docs/diffusion.md)
    np.testing.assert_allclose(run.sample(1, seed=7, scheduler="ddim", steps=3, class_label=1), g1, atol=1e-5)
    with pytest.raises(MedgenError, match="class-label"):
        run.sample(1, class_label=5)
    ddpm = run.sample(1, seed=7, scheduler="ddpm", steps=4)
    np.testing.assert_allclose(ddpm, run.sample(1, seed=7, scheduler="ddpm", steps=4), atol=1e-5)


def test_sample_and_interpolate_write_nifti_with_the_data_affine(tmp_path: Path, cond_run: Path,
                                                                 volume_affine: np.ndarray) -> None:
    import nibabel as nib
    from typer.testing import CliRunner

    from medgen_cli.cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["sample", str(cond_run), "--out", str(tmp_path / "s"), "--num", "2", "--seed", "3",
                              "--scheduler", "ddim", "--steps", "2", "--guidance-scale", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "s").glob("sample_*.nii.gz"))
    assert [f.name for f in files] == ["sample_00003.nii.gz", "sample_00004.nii.gz"]
    for f in files:
        img = nib.load(str(f))
        assert img.shape == (16, 16, 16)
        np.testing.assert_allclose(img.affine, volume_affine)
    assert (tmp_path / "s" / "preview" / "grid.png").is_file()

    res = runner.invoke(app, ["interpolate", str(cond_run), "--out", str(tmp_path / "i"), "--seed-a", "0",
                              "--seed-b", "1", "--steps", "3", "--sample-steps", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    frames = sorted((tmp_path / "i").glob("frame_*.nii.gz"))
    assert len(frames) == 3 and (tmp_path / "i" / "preview" / "strip.png").is_file()
    np.testing.assert_allclose(nib.load(str(frames[0])).affine, volume_affine)

    from medgen_cli.api import load_run

    run = load_run(cond_run)
    ends = np.asarray(run.interpolate(0, 1, frames=3, sample_steps=2))
    np.testing.assert_allclose(ends[0], np.asarray(nib.load(str(frames[0])).dataobj), atol=1e-5)
    out = run.save_nifti(ends[1], tmp_path / "mid.nii.gz")
    np.testing.assert_allclose(nib.load(str(out)).affine, volume_affine)


@pytest.mark.parametrize("fmt, suffix", [("npy", ".npy"), ("png", ".png"), ("points", ".ply")])
def test_other_formats(tmp_path: Path, cond_run: Path, fmt: str, suffix: str, volume_affine: np.ndarray) -> None:
    from medgen_cli.engine.inference import infer_to_dir

    flags = {"num": 1, "steps": 2, "format": fmt, **({"threshold": -1e9} if fmt == "points" else {})}
    paths = infer_to_dir(cond_run, "sample", flags, tmp_path, device="cpu").written.files
    assert paths[0].suffix == suffix and paths[0].stat().st_size > 0
    if fmt == "npy":
        assert np.load(paths[0]).shape == (16, 16, 16)
    if fmt == "points":
        from medgen_cli.data.points import load_points

        pts = load_points(paths[0])
        assert len(pts) == 16 ** 3  # threshold below every value keeps every voxel
        corner = volume_affine[:3, :3] @ np.array([15, 15, 15]) + volume_affine[:3, 3]
        np.testing.assert_allclose(pts.max(0), corner)


def test_v_prediction_trains(tmp_path: Path, ae_run: Path, metrics: Callable[..., list]) -> None:
    # All four training volumes in one batch without flips: the same batch every step, so the
    # v-prediction MSE (near 1 for an untrained UNet) must fall, as the epsilon one does above.
    # (v's targets keep more irreducible error than epsilon's on these latents: it levels off near 0.87.)
    run = train_df(ae_run, tmp_path, "trainer.max_steps=60", "noise.prediction_type=v_prediction",
                   "trainer.batch_size=4", "trainer.val_every=60", "trainer.image_every=1000",
                   "optimizer.lr=0.003", "data.flip=false")
    loss = metrics(run, "train/loss")
    assert len(loss) == 60 and metrics(run, "val/loss")
    assert np.mean(loss[-15:]) < 0.92 * np.mean(loss[:5]), loss


def test_resume_through_the_cli(tmp_path: Path, ae_run: Path) -> None:
    from typer.testing import CliRunner

    from medgen_cli.cli.app import app

    runner = CliRunner()
    base = ["train", "diffusion", "--config", str(TINY_DF), "--set", f"autoencoder_run={ae_run}",
            "--output-dir", str(tmp_path), "--name", "r", "--set", "trainer.log_every=1"]
    res = runner.invoke(app, [*base, "--set", "trainer.max_steps=2"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "diffusion" / "r"
    sf = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["family_state"]["scale_factor"]
    res = runner.invoke(app, ["train", "diffusion", "--resume", str(run), "--set", "trainer.max_steps=4"])
    assert res.exit_code == 0, res.output
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 4 and ck["family_state"]["scale_factor"] == sf
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "train/loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4]
    assert "from step 2 to 4" in (run / "log.txt").read_text()


def test_2d_latent_diffusion(tmp_path: Path, train_ae: Callable[..., Path]) -> None:
    from PIL import Image

    from medgen_cli.api import load_run

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 1)):
        (tmp_path / "img" / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(tmp_path / "img" / split / f"{i}.png")
    ae = train_ae(tmp_path / "img", tmp_path / "runs", steps=2, extra=["data.spatial_dims=2", "data.size=[16, 16]"])
    run = train_df(ae, tmp_path / "runs", "trainer.max_steps=2", "trainer.val_every=2")
    out = load_run(run).sample(2, seed=0, steps=2)
    assert out.arrays.shape == (2, 1, 16, 16) and np.isfinite(out.arrays).all()


@pytest.mark.parametrize("opts, message", [
    ({"scheduler": "euler"}, "unknown --scheduler"),
    ({"steps": 5000}, "exceeds the 1000 training timesteps"),
    ({"input": Path("x.nii.gz")}, "diffusion runs do not take --input"),
    ({"format": "gif"}, "--format gif is not available here"),
])
def test_sample_option_errors(tmp_path: Path, cond_run: Path, opts: dict, message: str) -> None:
    from medgen_cli.engine.inference import infer_to_dir

    with pytest.raises(MedgenError, match=message):
        infer_to_dir(cond_run, "sample", {"num": 1, **opts}, tmp_path / "s", device="cpu")
    assert not list(tmp_path.iterdir())


def test_samples_are_clipped_to_the_training_data_range(cond_run: Path) -> None:
    from medgen_cli.engine.run_loading import load_run

    ck = torch.load(cond_run / "checkpoints" / "latest.pt", weights_only=True)
    assert tuple(ck["family_state"]["value_range"]) == (0.0, 1.0)  # min-max scaled training data
    run = load_run(cond_run, device="cpu")
    fam, ae, unet = run.family, run.ctx.eval_module("autoencoder"), run.ctx.eval_module("unet")
    fam.cfg.sample.clip_to_data_range = False
    raw = fam.generate(unet, ae, torch.device("cpu"), 2, 3, "ddim", 3, 2.0, 0)
    fam.cfg.sample.clip_to_data_range = True
    clipped = fam.generate(unet, ae, torch.device("cpu"), 2, 3, "ddim", 3, 2.0, 0)
    assert raw.min() < 0.0 or raw.max() > 1.0  # the tiny model overshoots: the clip is exercised
    np.testing.assert_allclose(clipped, np.clip(raw, 0.0, 1.0), atol=1e-6)
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0


def test_flip_by_code_flips_the_axes_its_bits_name() -> None:
    from medgen_cli.data.datasets import flip_by_code

    x = torch.arange(2 * 1 * 2 * 3 * 4, dtype=torch.float32).view(2, 1, 2, 3, 4)
    out = flip_by_code(x, torch.tensor([0, 5]))  # 5 = 0b101: the first and the third spatial axis
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], torch.flip(x[1], [1, 3]))


def test_flips_are_told_to_the_unet_and_sampling_asks_for_none(tmp_path: Path, ae_run: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """data.flip with data.flip_label (EDM's non-leaking augmentation): each training volume's flips
    reach the UNet as its embedding index (class · 8 + code); validation and sampling ask for
    code 0, and classifier-free guidance's "no class" token is the null class with code 0. A run
    saved before 0.4.2 keeps its unlabelled flips."""
    from medgen_cli.api import load_run
    from medgen_cli.data import datasets
    from medgen_cli.families.diffusion import family as fam_mod, sampling

    seen: dict[str, list] = {"codes": [], "labels": [], "denoise": []}
    flip_by_code, loss, denoise = datasets.flip_by_code, fam_mod.DiffusionFamily._loss, sampling.denoise

    def spy_flip(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        seen["codes"].append(codes.clone())
        return flip_by_code(x, codes)

    def spy_loss(self, unet, z, labels, ctx, gen=None):  # type: ignore[no-untyped-def]
        seen["labels"].append((gen is None, labels.clone()))  # gen: validation's fixed draws
        return loss(self, unet, z, labels, ctx, gen)

    def spy_denoise(unet, scheduler, noise, labels, null_label, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["denoise"].append((labels.clone(), null_label))
        return denoise(unet, scheduler, noise, labels, null_label, *args, **kwargs)

    monkeypatch.setattr(datasets, "flip_by_code", spy_flip)
    monkeypatch.setattr(fam_mod.DiffusionFamily, "_loss", spy_loss)
    monkeypatch.setattr(sampling, "denoise", spy_denoise)
    run = train_df(ae_run, tmp_path, "name=flips", "conditioning.enabled=true", "data.flip=true",
                   "trainer.max_steps=3", "trainer.val_every=3", "trainer.image_every=1000", "conditioning.label_dropout=0")
    train = [lab for is_train, lab in seen["labels"] if is_train]
    val = [lab for is_train, lab in seen["labels"] if not is_train]
    assert len(train) == 3 == len(seen["codes"]) and val
    codes = torch.cat(seen["codes"])
    assert len(set(codes.tolist())) > 1  # a batch of volumes got different flips
    for lab, code in zip(train, seen["codes"]):
        assert torch.equal(lab % 8, code) and bool((lab // 8 < 2).all())  # two classes, none dropped
    assert all(bool((lab % 8 == 0).all()) for lab in val)

    loaded = load_run(run, device="cpu")
    assert loaded.family.modules["unet"].class_embedding.num_embeddings == (2 + 1) * 8
    seen["denoise"].clear()
    loaded.sample(2, seed=0, scheduler="ddim", steps=2, guidance_scale=2.0, class_label=1)
    labels, null = seen["denoise"][-1]
    assert labels.tolist() == [8, 8] and null == 2 * 8  # class 1, code 0; the null class, code 0

    from medgen_cli.config.build import build_config
    from medgen_cli.config.migrations import migrate_config

    saved = build_config("diffusion", overrides=["data.flip=true"]).model_dump(mode="json")
    saved["data"].pop("flip_label")
    assert build_config("diffusion", base=migrate_config(saved, "0.4.1")[0]).data.flip_label is False
