"""scripts/build_minkowski.sh keeps the compiler's output in a log: one line and a heartbeat while
it builds, the log's tail and a non-zero exit only when the build fails.

The build runs against a fake Python (and a fake ``dpkg``) that answers the script's questions and
prints thousands of compiler-like lines, so the test takes seconds and installs nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMPILER_LINES = 3000

FAKE_PYTHON = r'''#!{python}
"""Answers build_minkowski.sh's calls: -c snippets, -m venv, -m pip install / wheel."""
import os, sys
from pathlib import Path

state = Path(os.environ["FAKE_ME_STATE"])
args = sys.argv[1:]
if args[0] == "-c":
    code = args[1]
    if "import MinkowskiEngine" in code:
        if not (state / "installed").exists():
            sys.exit("ModuleNotFoundError: No module named 'MinkowskiEngine'")
        print("0.5.4")
    elif "torch.__version__" in code and "build env" not in code:
        print("9.9.9")
    elif "_base_executable" in code:
        print(sys.argv[0])
    elif "sysconfig" in code:
        print(state / "site")
    else:
        print("build env: numpy 1.26 setuptools 59 torch 9.9.9")
elif args[:2] == ["-m", "venv"]:
    py = Path(args[2]) / "bin" / "python"
    py.parent.mkdir(parents=True, exist_ok=True)
    py.symlink_to(sys.argv[0])
    (Path(args[2]) / "site").mkdir(exist_ok=True)
elif args[:3] == ["-m", "pip", "install"]:
    if "--force-reinstall" in args:
        (state / "installed").touch()
    else:
        print("\n".join(f"Collecting package{{i}}" for i in range(50)))
elif args[:3] == ["-m", "pip", "wheel"]:
    for i in range({lines}):
        print(f"g++ -pthread -O3 -c src/unit{{i}}.cpp -o build/unit{{i}}.o")
    if os.environ["FAKE_ME_MODE"] == "fail":
        print("src/broken.cpp:12:3: error: 'THCudaCheck' was not declared in this scope", file=sys.stderr)
        print("error: command '/usr/bin/g++' failed with exit code 1", file=sys.stderr)
        sys.exit(1)
    out = Path(args[args.index("-w") + 1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "MinkowskiEngine-0.5.4-cp311-cp311-linux_x86_64.whl").write_bytes(b"wheel")
else:
    sys.exit(f"fake python: unexpected {{args}}")
'''


def _build(tmp_path: Path, mode: str, heartbeat: str | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    state = tmp_path / "state"
    (state / "site").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_py = bin_dir / "python"
    fake_py.write_text(FAKE_PYTHON.format(python=sys.executable, lines=COMPILER_LINES))
    fake_py.chmod(0o755)
    dpkg = bin_dir / "dpkg"  # "libopenblas-dev is installed": no apt-get from a test
    dpkg.write_text("#!/bin/sh\nexit 0\n")
    dpkg.chmod(0o755)
    cache = tmp_path / "wheels"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_ME_STATE": str(state),
           "FAKE_ME_MODE": mode, "MEDGEN_WHEEL_CACHE": str(cache)}
    if heartbeat is not None:
        env["MEDGEN_HEARTBEAT_S"] = heartbeat
    res = subprocess.run(["bash", str(REPO / "scripts" / "build_minkowski.sh"), str(fake_py)],
                         capture_output=True, text=True, env=env, timeout=120)
    return res, cache / "torch-9.9.9"


needs_tools = pytest.mark.skipif(shutil.which("bash") is None or sys.platform == "win32", reason="needs bash")


@needs_tools
def test_a_successful_build_prints_a_few_lines_and_logs_the_rest(tmp_path: Path) -> None:
    res, cache = _build(tmp_path, "ok")
    assert res.returncode == 0, res.stderr
    out = (res.stdout + res.stderr).splitlines()
    assert len(out) <= 6, out  # was ~3,000: every compiler line
    log = cache / "build.log"
    assert "building it (7-11 min" in res.stdout and f"log: {log}" in res.stdout
    assert "ready in" in res.stdout
    assert not any("unit" in line for line in out)
    assert len(log.read_text().splitlines()) >= COMPILER_LINES  # everything is in the log
    assert list(cache.glob("MinkowskiEngine-0.5.4-*.whl"))  # the wheel is cached


@needs_tools
def test_a_failed_build_exits_non_zero_with_the_logs_tail(tmp_path: Path) -> None:
    res, cache = _build(tmp_path, "fail")
    assert res.returncode != 0
    assert "FAILED" in res.stderr and str(cache / "build.log") in res.stderr
    assert "error: command '/usr/bin/g++' failed" in res.stderr  # the cause, from the tail
    assert "'THCudaCheck' was not declared" in res.stderr
    assert "src/unit5.cpp" not in res.stderr + res.stdout  # not the whole log
    assert len((res.stdout + res.stderr).splitlines()) < 80
    assert not list(cache.glob("*.whl"))  # nothing half-built is cached


@needs_tools
def test_run_logged_heartbeat_is_bounded(tmp_path: Path) -> None:
    script = f'''
set -euo pipefail
source {REPO / "scripts" / "run_logged.sh"}
slow() {{ for i in $(seq 500); do echo "line $i"; done; sleep 3.5; }}
run_logged {tmp_path / "x.log"} "doing X" slow
'''
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MEDGEN_HEARTBEAT_S": "1"})
    assert res.returncode == 0
    beats = [line for line in res.stdout.splitlines() if "still running" in line]
    assert 1 <= len(beats) <= 4, res.stdout
    assert "500 log lines" in beats[-1]
    assert res.stdout.splitlines()[-1].startswith("  done in")
