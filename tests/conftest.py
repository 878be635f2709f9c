"""Shared fixtures: the toy family is registered for in-process and subprocess tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")

_mods = [m for m in os.environ.get("MEDGEN_FAMILY_MODULES", "").split(",") if m]
if "tests.toy_family" not in _mods:
    os.environ["MEDGEN_FAMILY_MODULES"] = ",".join([*_mods, "tests.toy_family"])


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
