"""Shared fixtures: the toy family is registered for in-process and subprocess tests."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")

_mods = [m for m in os.environ.get("MEDGEN_FAMILY_MODULES", "").split(",") if m]
if "tests.toy_family" not in _mods:
    os.environ["MEDGEN_FAMILY_MODULES"] = ",".join([*_mods, "tests.toy_family"])

# A suite started in the background of a non-interactive shell (`pytest ... &`, nohup) inherits
# SIGINT ignored, and every worker and subprocess it starts would too: the Ctrl-C tests would then
# test nothing. Give the session Python's own handler back, as an interactive start has it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """Environment for `python -m medgen_cli` subprocesses run from the repo root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MEDGEN_FAMILY_MODULES"] = os.environ["MEDGEN_FAMILY_MODULES"]
    env["OMP_NUM_THREADS"] = "1"
    env.setdefault("TORCH_HOME", str(tmp_path / "torch_home"))
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


# ---- CBCT: one 16³ phantom dataset and one tiny trained dif-gaussian run per session ----------
TINY_DIF_GAUSSIAN = REPO / "configs" / "tiny" / "dif_gaussian.yaml"


@pytest.fixture(scope="session")
def cbct_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic phantoms at 16³ (train 10 / val 1 / test 1), 50 views over 180°."""
    from medgen_cli.data import cbct
    from medgen_cli.data.cbct.geometry import CBCTGeometry

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
    cfg = build_config("dif-gaussian", config_file=TINY_DIF_GAUSSIAN,
                       overrides=[f"data.root={cbct_data}", f"output_dir={runs}", "name=tiny"])
    run = train_from_config(cfg)
    assert run is not None
    return run


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``medgen ARGS`` in this process: (exit code, stdout, stderr); earlier output is discarded."""
    from medgen_cli.cli.app import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_streams(capsys: pytest.CaptureFixture[str]):  # noqa: ANN201
    """``medgen ARGS``: (exit code, stdout, stderr), each stream apart (:func:`run_cli`)."""
    return lambda *args: run_cli(list(args), capsys)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy-family run trained for 2 steps on the CPU (a checkpoint to sample from)."""
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    out = tmp_path_factory.mktemp("runs")
    run = train_from_config(build_config("toy", overrides=["trainer.max_steps=2", "trainer.ckpt_every=2",
                                                           "trainer.device=cpu", f"output_dir={out}", "name=t"]))
    assert run is not None
    return run
