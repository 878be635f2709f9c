"""``medgen eval frd``: the Fréchet Radiomics Distance of two NIfTI folders, against the value
of the authors' package (``python -m frd_score REAL FAKE``) on the same files.

The comparison needs the optional extra ``frd`` (frd-score + pyradiomics-bhklab) and is skipped,
with the reason, without it; the refusals are checked either way.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medgen_cli.cli.app import app, main
from medgen_cli.errors import MedgenError
from medgen_cli.metrics import frd


def _balls(folder: Path, n: int, radius: float, seed: int) -> Path:
    """``n`` 16³ volumes: a ball of about ``radius`` voxels at a random centre, plus faint noise."""
    from medgen_cli.io import save_nifti

    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1)
    for i in range(n):
        r = radius + rng.uniform(0, 1.5)
        vol = (np.linalg.norm(g - rng.uniform(6, 10, 3), axis=-1) < r).astype(np.float32)
        save_nifti(vol + 0.1 * rng.random(vol.shape).astype(np.float32), folder / f"v{i}.nii.gz", overwrite=True)
    return folder


def _medgen(*args: str) -> dict:
    res = CliRunner().invoke(app, ["eval", "frd", *args, "--workers", "1", "--json"])
    if res.exception is not None:
        raise res.exception
    return json.loads(res.stdout[res.stdout.index("{"):])


@pytest.mark.skipif(frd.missing_reason() is not None,
                    reason=f"optional extra 'frd' not installed ({frd.missing_reason()}): pip install 'medgen[frd]'")
def test_frd_is_the_packages_own_number(tmp_path: Path) -> None:
    real = _balls(tmp_path / "real", 5, 4.0, seed=0)
    fake = _balls(tmp_path / "fake", 5, 5.5, seed=1)
    got = _medgen(str(real), str(fake))
    out = subprocess.run([sys.executable, "-m", "frd_score", str(real), str(fake)], capture_output=True, text=True,
                         check=True).stdout
    ref = float(re.search(r"FRD \(v1\): (\S+)", out).group(1))
    assert got["frd"] == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert (got["num_real"], got["num_fake"], got["version"]) == (5, 5, "v1")


def test_a_folder_with_one_volume_is_one_line(tmp_path: Path) -> None:
    _balls(tmp_path / "real", 2, 4.0, seed=0)
    _balls(tmp_path / "one", 1, 4.0, seed=1)
    with pytest.raises(MedgenError, match="holds 1 NIfTI volume"):
        frd.volume_files(tmp_path / "one", "FAKE")
    res = CliRunner().invoke(app, ["eval", "frd", str(tmp_path / "real"), str(tmp_path / "nope")])
    assert isinstance(res.exception, MedgenError) and "not a folder" in str(res.exception)


def test_without_the_extra_the_fix_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(frd, "missing_reason", lambda: "frd-score is not installed")
    real = _balls(tmp_path / "real", 2, 4.0, seed=0)
    fake = _balls(tmp_path / "fake", 2, 5.0, seed=1)
    with pytest.raises(MedgenError, match=r"medgen\[frd\]"):
        frd.compute_frd(real, fake)
    with pytest.raises(SystemExit) as exit_info:  # the CLI prints it as one line, brackets kept
        main(["eval", "frd", str(real), str(fake)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "pip install 'medgen[frd]'" in err and len(err.strip().splitlines()) == 1
