"""One config vocabulary (medgen_cli/config/NAMING.md): the 0.4.0 renames migrate old runs, old
``--set`` keys and old checkpoints' optimizer names; family defaults survive partial mappings."""

from __future__ import annotations

import pytest

from medgen_cli.config.build import build_config
from medgen_cli.config.migrations import migrate_checkpoint_states, migrate_config, migrate_override


def test_old_dif_gaussian_config_loads_with_notes() -> None:
    old = {"family": "dif-gaussian", "medgen_version": "0.3.1",
           "trainer": {"optim": {"schedule": "cosine", "warmup_steps": 5}},
           "optim": {"optimizer": "adam", "lr": 0.02}}
    new, notes = migrate_config(old)
    cfg = build_config("dif-gaussian", base=new)
    assert cfg.optimizer.kind == "adam" and cfg.optimizer.lr == 0.02
    assert cfg.trainer.lr_schedule.kind == "cosine" and cfg.trainer.lr_schedule.warmup_steps == 5
    assert [n.split("'")[1:4:2] for n in notes] == [
        ["trainer.optim", "trainer.lr_schedule"], ["trainer.lr_schedule.schedule", "trainer.lr_schedule.kind"],
        ["optim", "optimizer"], ["optimizer.optimizer", "optimizer.kind"], ["trainer.ema.warmup"]]
    assert cfg.trainer.ema.warmup is False  # 0.4.2's EMA warm-up: an older run keeps its fixed decay


def test_old_autoencoder_learning_rates_are_renamed() -> None:
    new, notes = migrate_config({"family": "autoencoder", "optimizer": {"lr": 2e-3, "d_lr": 5e-4}}, "0.3.1")
    cfg = build_config("autoencoder", base=new)
    assert (cfg.optimizer.lr_g, cfg.optimizer.lr_d) == (2e-3, 5e-4)
    assert len(notes) == 3 and "'optimizer.d_lr' is now 'optimizer.lr_d'" in notes[1]
    assert "'trainer.ema.warmup' (new in 0.4.2) set to False" in notes[2] and not cfg.trainer.ema.warmup


def test_diffusion_run_with_an_old_embedded_autoencoder_config_loads() -> None:
    ae_old = {"family": "autoencoder", "optimizer": {"lr": 3e-3, "d_lr": 1e-3},
              "trainer": {"optim": {"schedule": "step"}}, "data": {"size": [16, 16, 16]}}
    old = {"family": "diffusion", "medgen_version": "0.3.1", "autoencoder": ae_old,
           "trainer": {"optim": {"warmup_steps": 3}}}
    new, notes = migrate_config(old)
    cfg = build_config("diffusion", base=new)
    assert cfg.autoencoder is not None and type(cfg.autoencoder).__name__ == "AutoencoderConfig"
    assert (cfg.autoencoder.optimizer.lr_g, cfg.autoencoder.optimizer.lr_d) == (3e-3, 1e-3)
    assert cfg.autoencoder.trainer.lr_schedule.kind == "step" and cfg.trainer.lr_schedule.warmup_steps == 3
    assert sum("[in 'autoencoder']" in n for n in notes) == 5  # 2 renames, 2 of 0.4.0's schedule, the EMA warm-up
    assert not cfg.trainer.ema.warmup and not cfg.autoencoder.trainer.ema.warmup
    assert ae_old["optimizer"] == {"lr": 3e-3, "d_lr": 1e-3}  # the input is not modified


def test_embedded_autoencoder_config_is_validated_strictly() -> None:
    from medgen_cli.errors import MedgenError

    with pytest.raises(MedgenError, match="autoencoder.optimizer.lr"):
        build_config("diffusion", base={"autoencoder": {"family": "autoencoder", "optimizer": {"lr": 1e-3}}})


def test_old_set_keys_still_work_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = build_config("sagan", overrides=["trainer.optim.step_size=5", "trainer.optim.schedule=cosine"])
    assert cfg.trainer.lr_schedule.step_size == 5 and cfg.trainer.lr_schedule.kind == "cosine"
    err = capsys.readouterr().err
    assert "'trainer.optim.step_size' is now 'trainer.lr_schedule.step_size' (since medgen 0.4.0)" in err
    assert migrate_override("dif_gaussian", "optim.optimizer") == (
        "optimizer.kind", "'optim.optimizer' is now 'optimizer.kind' (since medgen 0.4.0); the old name still works for now")
    assert migrate_override("sagan", "optimizer.lr") == ("optimizer.lr", None)  # autoencoder's rename only


def test_old_sparse_gan_checkpoint_optimizers_are_g_and_d() -> None:
    ck = {"family": "sparse-gan", "medgen_version": "0.3.1",
          "optimizers": {"generator": 1, "discriminator": 2}, "schedulers": {"generator": 3, "discriminator": 4},
          "scalers": {}}
    assert len(migrate_checkpoint_states(ck)) == 4
    assert ck["optimizers"] == {"g": 1, "d": 2} and ck["schedulers"] == {"g": 3, "d": 4}
    current = {"family": "sparse-gan", "medgen_version": "0.4.0", "optimizers": {"generator": 1}}
    assert migrate_checkpoint_states(current) == [] and current["optimizers"] == {"generator": 1}


@pytest.mark.parametrize("family, partial, expected", [
    ("sparse-gan", {"batch_size": 2}, {"max_steps": 20000, "ema.enabled": True}),
    ("sparse-gan", {"ema": {"decay": 0.9}}, {"max_steps": 20000, "ema.enabled": True, "ema.decay": 0.9}),
    ("autoencoder", {"max_steps": 7}, {"batch_size": 2, "ema.enabled": True}),
    ("dif-gaussian", {"lr_schedule": {"warmup_steps": 5}}, {"lr_schedule.kind": "exponential", "grad_clip": 1.0}),
    ("sagan", {"ema": {"decay": 0.5}}, {"batch_size": 16, "ema.enabled": True, "lr_schedule.kind": "step"}),
])
def test_a_partial_trainer_mapping_keeps_the_family_defaults(family: str, partial: dict, expected: dict) -> None:
    trainer = build_config(family, base={"trainer": partial}).trainer
    for dotted, value in expected.items():
        node = trainer
        for part in dotted.split("."):
            node = getattr(node, part)
        assert node == value, dotted


def test_the_2d_gans_share_one_base_and_one_image_data_config() -> None:
    from medgen_cli.data.image_config import ImageFolderConfig
    from medgen_cli.families.fastgan.config import FastGANConfig
    from medgen_cli.families.gan2d.config import GAN2DConfig
    from medgen_cli.families.sagan.config import SAGANConfig
    from medgen_cli.families.stylegan2.config import StyleGAN2Config

    for config in (FastGANConfig, SAGANConfig, StyleGAN2Config):
        assert issubclass(config, GAN2DConfig) and isinstance(config().data, ImageFolderConfig)
        assert set(config.model_fields) - set(GAN2DConfig.model_fields) == {"model", "loss"}
