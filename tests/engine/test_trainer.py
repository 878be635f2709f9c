"""The shared trainer on the toy family: learning, exact resume, crash safety, schedules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medgen_cli.contract.config import LRScheduleConfig
from medgen_cli.engine import checkpoint as ckpt_io
from medgen_cli.config.build import build_config
from medgen_cli.engine.launch import resume_config, train_from_config
from medgen_cli.engine.schedules import lr_multiplier
from medgen_cli.errors import MedgenError
from tests.contract import read_metrics


def _train(tmp_path: Path, *overrides: str) -> Path:
    cfg = build_config("toy", overrides=[f"output_dir={tmp_path / 'runs'}", *overrides])
    run = train_from_config(cfg)
    assert run is not None
    return run


def test_loss_falls_on_learnable_problem(tmp_path: Path) -> None:
    run = _train(tmp_path, "trainer.max_steps=150", "trainer.log_every=1", "trainer.val_every=1000")
    m = read_metrics(run)
    first = sum(m[s]["train/loss"] for s in range(1, 11)) / 10
    last = sum(m[s]["train/loss"] for s in range(141, 151)) / 10
    assert last < 0.2 * first, (first, last)


def test_run_directory_layout(tmp_path: Path) -> None:
    run = _train(tmp_path, "trainer.max_steps=6", "trainer.ckpt_every=2", "trainer.keep_last=2",
                 "trainer.val_every=3")
    assert run == tmp_path / "runs" / "toy" / "run-001"
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "checkpoints", "tb", "samples", "metrics.jsonl", "log.txt"} <= names
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["best.pt", "latest.pt", "step_4.pt", "step_6.pt"]  # keep_last=2 pruned step_2
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    # Auto-numbering continues.
    assert _train(tmp_path, "trainer.max_steps=1") == tmp_path / "runs" / "toy" / "run-002"


def test_checkpoint_contents_load_weights_only(tmp_path: Path) -> None:
    run = _train(tmp_path, "trainer.max_steps=5", "trainer.ema.enabled=true", "trainer.val_every=5")
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    for key in ("modules", "optimizers", "schedulers", "ema", "rng", "step", "epoch", "batch_in_epoch",
                "best", "family", "config", "medgen_version", "family_state"):
        assert key in ck
    assert ck["step"] == 5 and ck["family"] == "toy" and ck["config"]["trainer"]["max_steps"] == 5
    assert ck["family_state"]["seen"] == 5 * 4
    assert set(ck["rng"]) >= {"python", "numpy", "torch"}


def test_exact_resume_mid_epoch_with_schedule(tmp_path: Path) -> None:
    # 64 items / batch 4 = 16 batches per epoch; the stop at 20 is inside epoch 1.
    common = ["trainer.log_every=1", "trainer.ema.enabled=true", "trainer.lr_schedule.warmup_steps=5",
              "trainer.lr_schedule.kind=step", "trainer.lr_schedule.step_size=7", "model.dropout=0.2",
              "trainer.grad_clip=0.5"]
    full = _train(tmp_path, *common, "trainer.max_steps=40", "name=full")
    half = _train(tmp_path, *common, "trainer.max_steps=20", "name=half")
    ck_half = torch.load(half / "checkpoints" / "latest.pt", weights_only=True)
    assert (ck_half["epoch"], ck_half["batch_in_epoch"]) == (1, 4)
    cfg, _ = resume_config(half, "toy", None, ["trainer.max_steps=40"])
    train_from_config(cfg, resume=half)
    a = torch.load(full / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(half / "checkpoints" / "latest.pt", weights_only=True)
    for k, v in a["modules"]["net"].items():
        assert torch.equal(v, b["modules"]["net"][k]), k
    for k, v in a["ema"]["net"].items():
        assert torch.equal(v, b["ema"]["net"][k]), k
    sa, sb = a["optimizers"]["opt"]["state"], b["optimizers"]["opt"]["state"]
    for pid in sa:
        for k in sa[pid]:
            assert torch.equal(sa[pid][k], sb[pid][k]), (pid, k)
    assert a["schedulers"]["opt"]["last_epoch"] == b["schedulers"]["opt"]["last_epoch"] == 40
    assert read_metrics(full) == {s: m for s, m in read_metrics(half).items()}


def test_interrupted_checkpoint_write_keeps_good_latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _train(tmp_path, "trainer.max_steps=4")
    latest = run / "checkpoints" / "latest.pt"
    before = latest.read_bytes()

    def broken_save(obj: object, fh: object, *a: object, **k: object) -> None:
        fh.write(b"PARTIAL" * 1000)  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt_io.save_checkpoint({"family": "toy", "step": 99}, [latest])
    assert latest.read_bytes() == before
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")] == []
    assert ckpt_io.load_checkpoint(latest)["step"] == 4


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MedgenError, match="cannot read checkpoint"):
        ckpt_io.load_checkpoint(bad)


def test_fast_dev_run_keeps_nothing(tmp_path: Path) -> None:
    cfg = build_config("toy", overrides=[f"output_dir={tmp_path / 'runs'}", "trainer.fast_dev_run=true"])
    assert train_from_config(cfg) is None
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))


def test_too_small_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MedgenError, match="fewer than one batch"):
        _train(tmp_path, "data.n_train=2", "trainer.batch_size=4")


@pytest.mark.parametrize(
    "cfg,expected",
    [
        (LRScheduleConfig(warmup_steps=4), [0.25, 0.5, 0.75, 1.0, 1.0]),
        (LRScheduleConfig(warmup_steps=4, skip_warmup=True), [1.0] * 5),
        (LRScheduleConfig(kind="step", step_size=2, gamma=0.5), [1.0, 1.0, 0.5, 0.5, 0.25]),
        (LRScheduleConfig(kind="exponential", gamma=0.9), [1.0, 0.9, 0.81, 0.729, 0.6561]),
        (LRScheduleConfig(kind="cosine"), [1.0, 0.8535534, 0.5, 0.1464466, 0.0]),
    ],
)
def test_lr_multiplier_analytic(cfg: LRScheduleConfig, expected: list[float]) -> None:
    f = lr_multiplier(cfg, lambda: 4)
    assert [round(f(s), 6) for s in range(5)] == pytest.approx(expected, abs=1e-6)


def test_metrics_jsonl_truncated_on_resume(tmp_path: Path) -> None:
    run = _train(tmp_path, "trainer.max_steps=6", "trainer.log_every=1", "trainer.ckpt_every=3")
    # Pretend the process died after step 6's metrics but before its checkpoint: roll latest back.
    (run / "checkpoints" / "latest.pt").unlink()
    (run / "checkpoints" / "step_3.pt").rename(run / "checkpoints" / "latest.pt")
    cfg, _ = resume_config(run, "toy", None, ["trainer.max_steps=8"])
    train_from_config(cfg, resume=run)
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()
             if "train/loss" in l]
    assert steps == list(range(1, 9))


def test_failed_fresh_run_leaves_no_directory(tmp_path: Path) -> None:
    with pytest.raises(MedgenError):
        _train(tmp_path, "data.n_train=2", "trainer.batch_size=4", "name=broken")
    assert not (tmp_path / "runs" / "toy" / "broken").exists()
    _train(tmp_path, "trainer.max_steps=1", "name=broken")  # the name is free again


def test_nonfinite_validation_metric_is_a_warning_and_never_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # psnr=inf is what constant validation data gives: a problem to report, not the best model.
    from tests.toy_family import ToyFamily

    values = iter([float("inf"), 20.0, float("nan")])
    monkeypatch.setattr(ToyFamily, "key_metric", "psnr")
    monkeypatch.setattr(ToyFamily, "key_mode", "max")
    monkeypatch.setattr(ToyFamily, "validate", lambda self, batches, ctx: {"psnr": next(values)})
    run = _train(tmp_path, "trainer.max_steps=6", "trainer.val_every=2", "trainer.ckpt_every=2")
    err = capsys.readouterr().err
    assert "warning: val/psnr=inf at step 2 is not finite (not a candidate for best.pt)" in err, err
    assert "warning: val/psnr=nan at step 6 is not finite" in err, err
    assert "warning: val/psnr=inf at step 2" in (run / "log.txt").read_text()
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["step"] == 4 and best["best"]["value"] == 20.0
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["best"]["value"] == 20.0


@pytest.mark.parametrize("measured, native, amp, logged", [
    (True, True, "auto", "training on cpu in bfloat16 autocast"),
    (False, True, "auto", "training on cpu from step"),
    (True, False, "auto", "training on cpu from step"),
    (False, False, "bf16", "note: trainer.amp=bf16 on a CPU without native bf16"),
])
def test_amp_auto_on_cpu_follows_the_family_and_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       measured: bool, native: bool, amp: str, logged: str) -> None:
    from tests.toy_family import ToyFamily

    monkeypatch.setattr(ToyFamily, "cpu_autocast", measured)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    run = _train(tmp_path, "trainer.max_steps=2", "trainer.device=cpu", f"trainer.amp={amp}")
    assert logged in (run / "log.txt").read_text()
