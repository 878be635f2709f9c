"""Config migrations: runs saved by an older medgen (older key layout) still load and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from medgen_cli import __version__
from medgen_cli.config import migrations
from medgen_cli.config.build import build_config
from medgen_cli.config.migrations import Migration, migrate_config, read_saved_config
from medgen_cli.errors import MedgenError

#: A layout change of the toy family, as a later medgen would list it.
TOY_TABLE = (Migration(__version__, "toy", renamed={"model.width": "model.hidden"}, removed=("model.legacy",),
                       why="test"),)


def test_sparse_gan_optim_section_from_0_1_0_is_renamed() -> None:
    old = {"family": "sparse-gan", "optim": {"lr_g": 3e-4, "lr_d": 2e-4, "betas": [0.0, 0.9]}}
    new, notes = migrate_config(old, "0.1.0")
    assert "optim" not in new and new["optimizer"]["lr_g"] == 3e-4
    assert notes[0] == ("config from medgen 0.1.0: 'optim' is now 'optimizer' (sparse-gan's optimizer section is "
                        "named like every other family's)")
    # Later versions' migrations follow in order: 0.3.0 keeps the old run's sparse critic and no R1,
    # 0.4.1 its volume-scaled coarse budgets, 0.4.2 the EMA warm-up sparse-gan always had.
    assert [n.split("'")[1] for n in notes[1:]] == ["discriminator.kind", "loss.r1_weight", "loss.r1_interval",
                                                    "generator.budget_scaling", "trainer.ema.warmup"]
    cfg = build_config("sparse-gan", base=new)  # strict validation accepts the migrated layout
    assert cfg.optimizer.lr_d == 2e-4 and tuple(cfg.optimizer.betas) == (0.0, 0.9)
    assert cfg.discriminator.kind == "sparse" and cfg.loss.r1_weight == 0.0
    assert cfg.generator.budget_scaling == "volume" and cfg.trainer.ema.warmup
    assert old["optim"]["lr_g"] == 3e-4  # the input is not modified


def test_unmigrated_old_layout_is_refused_by_strict_validation() -> None:
    with pytest.raises(MedgenError, match="unknown config key 'optim'"):
        build_config("sparse-gan", base={"optim": {"lr_g": 3e-4}})


def test_current_layout_and_other_families_are_untouched() -> None:
    cur = {"family": "sparse-gan", "optimizer": {"lr_g": 1e-4}, "medgen_version": __version__}
    assert migrate_config(cur) == ({"family": "sparse-gan", "optimizer": {"lr_g": 1e-4}}, [])
    sagan = {"family": "sagan", "optim": {"lr_g": 1e-4}}  # not sparse-gan: no rename (and invalid anyway)
    migrated = migrate_config(sagan, "0.1.0")[0]  # (0.4.0 adds trainer.best.guard to old GAN configs)
    assert migrated["optim"] == sagan["optim"] and "optimizer" not in migrated


def test_newer_config_is_refused() -> None:
    with pytest.raises(MedgenError, match="newer than this medgen"):
        migrate_config({"family": "toy", "medgen_version": "99.0.0"})


def test_removed_key_and_a_set_new_key_win(capsys: pytest.CaptureFixture[str]) -> None:
    data = {"family": "toy", "model": {"width": 8, "hidden": 32, "legacy": True}}
    out, notes = migrate_config(data, "0.1.0", table=TOY_TABLE)
    assert out == {"family": "toy", "model": {"hidden": 32}}
    assert len(notes) == 2 and "'model.legacy' was removed" in notes[1]
    # The real table has no toy entry (its one key every family gained is set here): nothing to say.
    read_saved_config({**data, "trainer": {"ema": {"warmup": False}}}, "0.1.0")
    assert capsys.readouterr().err == ""


def _downgrade(run: Path) -> None:
    """Rewrite ``run`` as medgen 0.1.0 would have left it under TOY_TABLE's old layout: no version
    stamps, ``model.width`` instead of ``model.hidden`` and a since-removed ``model.legacy``."""
    def old_layout(cfg: dict) -> dict:
        cfg = {k: v for k, v in cfg.items() if k != "medgen_version"}
        model = dict(cfg["model"])
        model["width"] = model.pop("hidden")
        model["legacy"] = True
        return {**cfg, "model": model}

    (run / "config.yaml").write_text(yaml.safe_dump(old_layout(yaml.safe_load((run / "config.yaml").read_text()))))
    for path in (run / "checkpoints").glob("*.pt"):
        ck = torch.load(path, weights_only=True)
        ck["medgen_version"] = "0.1.0"
        ck["config"] = old_layout(ck["config"])
        path.unlink()  # latest/step_N may be hard links of one file
        torch.save(ck, path)


def test_old_run_loads_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from medgen_cli.engine.launch import resume_config, train_from_config
    from medgen_cli.engine.run_loading import load_run

    run = train_from_config(build_config("toy", overrides=["trainer.max_steps=2", "model.hidden=8", "trainer.device=cpu",
                                                          f"output_dir={tmp_path}", "name=old"]))
    assert run is not None
    assert yaml.safe_load((run / "config.yaml").read_text())["medgen_version"] == __version__
    _downgrade(run)
    capsys.readouterr()
    monkeypatch.setattr(migrations, "MIGRATIONS", TOY_TABLE)

    loaded = load_run(run, checkpoint="latest", device="cpu")
    assert loaded.family.cfg.model.hidden == 8 and loaded.step == 2
    assert "'model.width' is now 'model.hidden'" in capsys.readouterr().err

    cfg, changed = resume_config(run, "toy", None, ["trainer.max_steps=4"])
    assert changed == ["trainer.max_steps"] and cfg.model.hidden == 8
    assert train_from_config(cfg, resume=run) == run
    saved = yaml.safe_load((run / "config.yaml").read_text())  # rewritten in the current layout
    assert saved["medgen_version"] == __version__ and saved["model"]["hidden"] == 8 and "width" not in saved["model"]
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"] == 4


def test_a_hand_written_config_file_gets_renames_but_current_defaults(tmp_path) -> None:
    """An unstamped ``--config`` (the user's own file, e.g. a preset) takes this medgen's defaults
    for keys it leaves out; a stamped one (a saved run's config.yaml) keeps the old behaviour."""
    import yaml

    from medgen_cli.config.build import build_config

    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({"family": "sparse-gan", "trainer": {"optim": {"schedule": "cosine"}}}))
    cfg = build_config("sparse-gan", config_file=own)
    assert cfg.trainer.lr_schedule.kind == "cosine"          # the old key name still renamed
    assert cfg.discriminator.kind == "dense" and cfg.loss.r1_interval == 4  # current defaults
    saved = tmp_path / "saved.yaml"
    saved.write_text(yaml.safe_dump({"medgen_version": "0.2.0", "family": "sparse-gan"}))
    old = build_config("sparse-gan", config_file=saved)
    assert old.discriminator.kind == "sparse" and old.loss.r1_weight == 0.0 and old.loss.r1_interval == 1
