"""The shared family contract suite: every family calls :func:`check_family_contract`.

It trains a tiny config through the real trainer and checks: steps run, metrics are finite (no
NaN, no Inf) and named by the scheme of :mod:`medgen_cli.engine.metric_names`;
a checkpoint round-trips into ``load_run``; stopping at step K/2 and resuming to K gives the same
next metrics and the same final weights as training to K without a stop.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from medgen_cli.config.build import build_config
from medgen_cli.engine.launch import resume_config, train_from_config
from medgen_cli.contract.metric_names import ROLES, is_train_metric, is_val_metric
from medgen_cli.engine.run_loading import load_run


def _read_logged(run_dir: Path, prefix: str) -> dict[int, dict[str, float]]:
    """metrics.jsonl → {step: the metrics whose names start with ``prefix``}."""
    out: dict[int, dict[str, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        picked = {k: v for k, v in rec.items() if k.startswith(prefix)}
        if picked:
            out[rec["step"]] = picked
    return out


def read_val_metrics(run_dir: Path) -> dict[int, dict[str, float]]:
    """metrics.jsonl → {step: validation metrics}."""
    return _read_logged(run_dir, "val/")


def check_metrics(run_dir: Path) -> None:
    """Every logged train/val metric is finite and follows the naming scheme."""
    for records, named in ((read_metrics(run_dir), is_train_metric), (read_val_metrics(run_dir), is_val_metric)):
        for step, metrics in records.items():
            for k, v in metrics.items():
                name = k.split("/", 1)[1]
                assert named(name), f"step {step}: {k} does not follow the metric-name scheme (engine/metric_names.py)"
                assert math.isfinite(v), f"step {step}: {k} is {v}"
    optimizers = {k.split("/", 1)[1] for metrics in _read_logged(run_dir, "lr/").values() for k in metrics}
    assert len(optimizers) <= 1 or optimizers <= set(ROLES), (
        f"optimizers {sorted(optimizers)}: a family with players names them g and d (medgen_cli/config/NAMING.md)")


def read_metrics(run_dir: Path) -> dict[int, dict[str, float]]:
    """metrics.jsonl → {step: train metrics} (validation lines are kept separately)."""
    return _read_logged(run_dir, "train/")


def _assert_close(a: dict[str, float], b: dict[str, float], rtol: float, what: str) -> None:
    assert a.keys() == b.keys(), f"{what}: metric names differ {sorted(a)} vs {sorted(b)}"
    for k in a:
        x, y = a[k], b[k]
        if math.isnan(x) and math.isnan(y):
            continue
        assert math.isclose(x, y, rel_tol=rtol, abs_tol=rtol * 1e-3), f"{what}: {k} {x} != {y}"


def check_family_contract(name: str, overrides: list[str], tmp_path: Path, steps: int = 4,
                          rtol: float = 0.0) -> Path:
    """Run the contract on family ``name`` with a tiny config given by ``overrides``.

    Args:
        name: registered family name.
        overrides: ``key=value`` strings that make the config tiny and point it at test data.
        tmp_path: a scratch directory.
        steps: total steps K (K/2 before the stop).
        rtol: relative tolerance for "same next metrics" (0 = bit-identical, the CPU default).

    Returns:
        The uninterrupted run's directory (for further family-specific checks).
    """
    assert steps >= 2 and steps % 2 == 0
    common = [*overrides, "trainer.log_every=1", "trainer.ckpt_every=1", f"trainer.val_every={10 * steps}",
              f"trainer.image_every={10 * steps}", f"output_dir={tmp_path / 'runs'}"]
    full = train_from_config(build_config(name, overrides=[*common, f"trainer.max_steps={steps}", "name=full"]))
    half = train_from_config(build_config(name, overrides=[*common, f"trainer.max_steps={steps // 2}", "name=split"]))
    assert full is not None and half is not None
    m_full = read_metrics(full)
    assert sorted(m_full) == list(range(1, steps + 1)), f"expected one metrics line per step, got {sorted(m_full)}"
    check_metrics(full)

    # Resume the split run to K with the saved config and the whitelisted max_steps change.
    resumed_cfg, changed = resume_config(half, name, None, [f"trainer.max_steps={steps}"])
    assert changed == ["trainer.max_steps"]
    train_from_config(resumed_cfg, resume=half)
    m_split = read_metrics(half)
    for step in range(steps // 2 + 1, steps + 1):
        _assert_close(m_full[step], m_split[step], rtol, f"step {step} after resume")

    a = torch.load(full / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(half / "checkpoints" / "latest.pt", weights_only=True)
    assert a["step"] == b["step"] == steps
    for mod in a["modules"]:
        for key, ta in a["modules"][mod].items():
            tb = b["modules"][mod][key]
            if rtol == 0.0:
                assert torch.equal(ta, tb), f"{mod}.{key} differs after resume"
            else:
                assert torch.allclose(ta.float(), tb.float(), rtol=rtol * 10, atol=1e-5), f"{mod}.{key} differs"

    # Save/load round trip through the inference loader (online weights).
    loaded = load_run(full, checkpoint="latest", device="cpu", use_ema=False)
    for mod, module in loaded.family.modules.items():
        for key, value in module.state_dict().items():
            assert torch.equal(value.cpu(), a["modules"][mod][key]), f"load_run: {mod}.{key} differs"
    return full
