"""The contract suite on the toy family, and the suite's own metric checks failing when they should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.contract import check_family_contract, check_metrics


def test_toy_family_passes_contract(tmp_path: Path) -> None:
    check_family_contract("toy", ["data.n_train=24", "trainer.batch_size=4", "trainer.ema.enabled=true"], tmp_path,
                          steps=8)


@pytest.mark.parametrize("record, message", [
    ({"train/loss": float("nan")}, "is nan"),
    ({"train/loss": float("inf")}, "is inf"),
    ({"val/fid": float("nan")}, "is nan"),
    ({"train/d_loss": 1.0}, "metric-name scheme"),
    ({"val/share/x": 1.0}, "metric-name scheme"),
])
def test_metric_check_refuses_nan_inf_and_unscheme_names(tmp_path: Path, record: dict[str, float], message: str) -> None:
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/grad_norm": 0.5, **record}) + "\n")
    with pytest.raises(AssertionError, match=message):
        check_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/loss": 0.5, "val/fid": 3.0}) + "\n")
    check_metrics(tmp_path)
