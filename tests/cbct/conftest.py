"""Shared CBCT fixtures: one 16³ phantom dataset and one tiny trained dif-gaussian run per session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny" / "dif_gaussian.yaml"


@pytest.fixture(scope="session")
def cbct_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic phantoms at 16³ (train 10 / val 1 / test 1), 50 views over 180°."""
    from medgen_cli.data import cbct
    from medgen_cli.data.geometry import CBCTGeometry

    out = tmp_path_factory.mktemp("cbct") / "d16"
    geo = CBCTGeometry().scaled(16)
    cbct.make_cbct(cbct.synthetic_sources(12, geo, seed=0), out, geo, (0.8, 0.1, 0.1), seed=0, is_hu_grid=True)
    return out


@pytest.fixture(scope="session")
def trained_run(cbct_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset trained for its 200 steps (~30-60 s on one CPU thread)."""
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    runs = tmp_path_factory.mktemp("runs")
    cfg = build_config("dif-gaussian", config_file=TINY,
                       overrides=[f"data.root={cbct_data}", f"output_dir={runs}", "name=tiny"])
    run = train_from_config(cfg)
    assert run is not None
    return run
