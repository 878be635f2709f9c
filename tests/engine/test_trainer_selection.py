"""The trainer with a guard metric on best.pt, plateau LR cuts and early stop (toy family, injected
validation values), and their exact resume; old runs and old GAN configs load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from medgen_cli.config.build import build_config
from medgen_cli.config.migrations import migrate_config
from medgen_cli.engine.launch import resume_config, train_from_config
from tests.contract import read_val_metrics


def _inject(monkeypatch: pytest.MonkeyPatch, table: dict[int, dict[str, float]]) -> None:
    """The toy family's validation returns ``table[step]`` (FID-like key metric, coverage guard)."""
    from tests.toy_family import ToyFamily

    monkeypatch.setattr(ToyFamily, "key_metric", "fid")
    monkeypatch.setattr(ToyFamily, "key_mode", "min")
    monkeypatch.setattr(ToyFamily, "validate", lambda self, batches, ctx: dict(table.get(ctx.global_step, {})))


def _train(tmp_path: Path, *overrides: str) -> Path:
    cfg = build_config("toy", overrides=[f"output_dir={tmp_path / 'runs'}", "trainer.log_every=1",
                                         "trainer.val_every=2", "trainer.ckpt_every=2", *overrides])
    run = train_from_config(cfg)
    assert run is not None
    return run


def _resume(run: Path, *overrides: str) -> None:
    cfg, _ = resume_config(run, "toy", None, list(overrides))
    train_from_config(cfg, resume=run)


def _ck(run: Path, name: str) -> dict[str, Any]:
    return torch.load(run / "checkpoints" / f"{name}.pt", weights_only=True)


def _lrs(run: Path) -> dict[int, float]:
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "lr/opt" in rec:
            out[rec["step"]] = rec["lr/opt"]
    return out


GUARDED = {2: {"fid": 100.0, "coverage": 0.5}, 4: {"fid": 80.0, "coverage": 0.1}, 6: {"fid": 90.0, "coverage": 0.45}}


def test_lower_fid_under_the_coverage_floor_does_not_become_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _inject(monkeypatch, GUARDED)
    run = _train(tmp_path, "trainer.max_steps=6", "trainer.best.guard=coverage", "trainer.keep_last=5")
    best = _ck(run, "best")
    assert best["step"] == 6 and best["best"]["value"] == 90.0 and best["best"]["guard"] == 0.45
    assert "val/fid=80 at step 4 would be best but val/coverage=0.1 is under the floor 0.25" in \
        (run / "log.txt").read_text()
    # TensorBoard's val group (metrics.jsonl mirrors it): coverage and its floor next to FID
    val = read_val_metrics(run)
    assert val[4] == {"val/fid": 80.0, "val/coverage": 0.1, "val/coverage_floor": 0.25}
    # without the guard, step 4 is best: the test above can fail
    plain = _train(tmp_path, "trainer.max_steps=6", "name=plain")
    assert _ck(plain, "best")["step"] == 4 and "val/coverage_floor" not in read_val_metrics(plain)[4]


def test_tensorboard_has_fid_and_coverage_in_one_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    _inject(monkeypatch, GUARDED)
    run = _train(tmp_path, "trainer.max_steps=6", "trainer.best.guard=coverage")
    acc = event_accumulator.EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"val/fid", "val/coverage", "val/coverage_floor"} <= tags, tags
    assert [e.value for e in acc.Scalars("val/coverage")] == pytest.approx([0.5, 0.1, 0.45])


PLATEAU = {s: {"fid": 100.0 + s} for s in range(2, 40, 2)}  # never better after step 2
PLATEAU[12] = {"fid": 50.0}  # one late new best


def test_plateau_cuts_the_lr_after_patience_evaluations_and_not_before(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _inject(monkeypatch, PLATEAU)
    run = _train(tmp_path, "trainer.max_steps=20", "trainer.lr_schedule.plateau_patience=2",
                 "trainer.lr_schedule.plateau_factor=0.5")
    base = 1e-2  # the toy's model.lr
    lrs = _lrs(run)
    # evaluations at 2 (best), 4, 6 (2nd without a new best: cut after step 6), 8, 10 (cut),
    # 12 (new best: counters restart), 14, 16 (cut), 18, 20 (cut, after the last step)
    expected = {s: base * (1.0 if s <= 6 else 0.5 if s <= 10 else 0.25 if s <= 16 else 0.125) for s in range(1, 21)}
    assert lrs == pytest.approx(expected), lrs
    record = _ck(run, "latest")["best"]
    assert (record["lr_factor"], record["since_best"], record["since_lr_change"]) == (0.0625, 4, 0)


def test_plateau_state_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _inject(monkeypatch, {**PLATEAU, **{s: {"fid": 60.0 + s, "coverage": 0.5 - 0.01 * s} for s in (14, 16, 18)}})
    common = ["trainer.lr_schedule.plateau_patience=3", "trainer.best.guard=coverage", "trainer.early_stop_patience=9"]
    full = _train(tmp_path, *common, "trainer.max_steps=24", "name=full")
    half = _train(tmp_path, *common, "trainer.max_steps=10", "name=half")  # stops mid-plateau (counter 4)
    assert _ck(half, "latest")["best"]["since_best"] == 4
    _resume(half, "trainer.max_steps=24")
    a, b = _ck(full, "latest"), _ck(half, "latest")
    assert a["best"] == b["best"] and a["best"]["lr_factor"] < 1.0
    assert _lrs(full) == _lrs(half)
    for k, v in a["modules"]["net"].items():
        assert torch.equal(v, b["modules"]["net"][k]), k


def test_early_stop_after_patience_evaluations_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _inject(monkeypatch, PLATEAU)
    run = _train(tmp_path, "trainer.max_steps=40", "trainer.early_stop_patience=3")
    latest = _ck(run, "latest")
    # best at 2; 4, 6, 8 without a new best: stop at step 8, not before
    assert latest["step"] == 8 and latest["finished"] and latest["best"]["since_best"] == 3
    assert max(read_val_metrics(run)) == 8
    assert "training stops at step 8" in (run / "log.txt").read_text()
    _resume(run)  # the same rule: nothing more to do
    assert _ck(run, "latest")["step"] == 8
    _resume(run, "trainer.early_stop_patience=6")  # more patience may be given on resume
    # 10 is the 4th evaluation without a new best, 12 a new best, then 14..24 six more without
    assert _ck(run, "latest")["step"] == 24


def test_run_of_an_older_medgen_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _inject(monkeypatch, PLATEAU)
    run = _train(tmp_path, "trainer.max_steps=4")
    latest = run / "checkpoints" / "latest.pt"
    ck = torch.load(latest, weights_only=True)
    ck["best"] = {k: ck["best"][k] for k in ("metric", "value", "step", "mode")}  # a 0.3 record
    torch.save(ck, latest)
    _resume(run, "trainer.max_steps=6")
    assert _ck(run, "latest")["best"]["value"] == 102.0 and _ck(run, "latest")["best"]["since_best"] == 1


@pytest.mark.parametrize("family", ["fastgan", "sagan", "stylegan2"])
def test_gan_runs_saved_before_keep_best_by_fid_alone(family: str) -> None:
    old, notes = migrate_config({"family": family, "medgen_version": "0.3.1", "trainer": {"max_steps": 5}})
    assert old["trainer"]["best"] == {"guard": None} and notes
    assert build_config(family, overrides=[f"trainer.best.guard=null"]).trainer.best.guard is None
    assert build_config(family).trainer.best.guard == "coverage"  # new runs: the coverage floor
    new, notes = migrate_config({"family": family, "medgen_version": "0.4.0", "trainer": {"max_steps": 5}})
    # (0.4.2's EMA warm-up is the one key added to a 0.4.0 config: it keeps the fixed decay)
    assert "best" not in new["trainer"] and [n.split("'")[1] for n in notes] == ["trainer.ema.warmup"]
