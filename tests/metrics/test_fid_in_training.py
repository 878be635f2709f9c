"""In-training FID of a 2D GAN equals ``medgen eval fid`` of ``medgen sample`` from the same
checkpoint (same reference, seeds, sample count, 8-bit quantisation and weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medgen_cli.cli.app import app
from medgen_cli.config.build import build_config
from medgen_cli.engine.launch import train_from_config
from medgen_cli.families.gan2d.synthetic import write_blob_folder


REPO = Path(__file__).resolve().parents[2]
FAMILY_OVERRIDES = {
    "sagan": ["model.latent_dim=8", "model.base_channels=4", "model.max_channels=8", "model.attention_resolution=8"],
    # StyleGAN2's samples also carry per-image noise: in training and in `medgen sample` it must come
    # from the same seeds, whatever the batch (fid.batch_size 3 vs sample's default 4).
    "stylegan2": ["fid.batch_size=3", "optimizer.lr_g=0.05"],
    "fastgan": ["model.z_dim=8", "model.g_channels=2", "model.d_channels=2", "model.max_channels=8"],
}


@pytest.mark.parametrize("family", sorted(FAMILY_OVERRIDES))
def test_in_training_fid_equals_eval_fid_of_samples(fid_env, tmp_path: Path, family: str) -> None:
    data = write_blob_folder(tmp_path / "data", n=4, resolution=16)
    over = ["trainer.max_steps=2", "trainer.batch_size=4", "trainer.device=cpu", "trainer.amp=\"off\"",
            "trainer.val_every=2", "trainer.ckpt_every=2", "trainer.image_every=100", "data.resolution=16",
            *FAMILY_OVERRIDES[family],
            "fid.enabled=true", "fid.schedule=[[100, 2]]", "fid.num_fake=4", "fid.seed=3",
            f"data.root={data}", f"output_dir={tmp_path}", "name=r"]
    tiny = REPO / "configs" / "tiny" / f"{family}.yaml"
    run = train_from_config(build_config(family, config_file=tiny if family == "stylegan2" else None, overrides=over))
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    in_training = [r["val/fid"] for r in lines if "val/fid" in r]
    assert len(in_training) == 1
    samples = tmp_path / "samples"
    res = CliRunner().invoke(app, ["sample", str(run), "--checkpoint", "best", "--num", "4", "--seed", "3",
                                   "--out", str(samples), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["eval", "fid", str(data), str(samples), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    evaluated = json.loads(res.stdout[res.stdout.index("{"):])
    assert evaluated["fake"]["n"] == 4 and evaluated["real"]["source"] == "cache"  # training cached DATA
    assert evaluated["fid"] == pytest.approx(in_training[0], rel=1e-6)
