from __future__ import annotations

from pathlib import Path

from tests.contract import check_family_contract


def test_toy_family_passes_contract(tmp_path: Path) -> None:
    check_family_contract("toy", ["data.n_train=24", "trainer.batch_size=4", "trainer.ema.enabled=true"], tmp_path,
                          steps=8)
