"""scripts/build_minkowski.sh: valid bash, and a no-op where MinkowskiEngine already imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medgen_cli.sparse import minkowski_status

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_minkowski.sh"


def test_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.minkowski
@pytest.mark.skipif(not minkowski_status()[0], reason=minkowski_status()[1])
def test_script_is_idempotent() -> None:
    res = subprocess.run(["bash", str(SCRIPT), sys.executable], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "already importable" in res.stdout
