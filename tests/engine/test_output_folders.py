"""Where `medgen sample`/`interpolate`/`recon` may write (issue 29, item 5): never into a non-empty
folder that is not a medgen output (a data folder), unless --overwrite; nothing written when refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture
def cli(cli_streams):  # noqa: ANN001, ANN201
    """``medgen ARGS``: (exit code, stdout, stderr) (tests/conftest.py)."""
    return cli_streams


def _data_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(3):
        np.save(root / f"case_{i}.npy", np.full((4, 4), i, dtype=np.float32))
    (root / "manifest.json").write_text(json.dumps([{"file": "case_0.npy", "split": "train", "label": 0}]))
    return root


def test_sample_refuses_a_non_empty_folder_that_is_not_a_medgen_output(toy_run: Path, tmp_path: Path, cli: Any) -> None:
    data = _data_folder(tmp_path / "real")
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    code, out, err = cli("sample", toy_run, "--num", "2", "--out", data, "--device", "cpu")
    assert code == 2 and "not empty" in err and "--overwrite" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before   # nothing written, nothing replaced


def test_a_folder_with_a_stray_file_is_refused_but_a_new_or_empty_one_is_not(toy_run: Path, tmp_path: Path, cli: Any) -> None:
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    code, _, err = cli("sample", toy_run, "--num", "2", "--out", stray, "--device", "cpu")
    assert code == 2 and "notes" not in err and "not empty" in err
    assert sorted(p.name for p in stray.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("sample", toy_run, "--num", "2", "--out", empty, "--device", "cpu")[0] == 0
    assert cli("sample", toy_run, "--num", "2", "--out", tmp_path / "new", "--device", "cpu")[0] == 0


def test_overwrite_writes_into_a_foreign_folder_and_a_medgen_output_is_still_guarded(toy_run: Path, tmp_path: Path,
                                                                                      cli: Any) -> None:
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    code, _, err = cli("sample", toy_run, "--num", "2", "--out", stray, "--device", "cpu", "--overwrite")
    assert code == 0, err
    assert (stray / "notes.txt").read_text() == "mine" and (stray / "manifest.json").is_file()
    # A medgen output: refused for its manifest (the old message), replaced with --overwrite.
    code, _, err = cli("sample", toy_run, "--num", "2", "--out", stray, "--device", "cpu")
    assert code == 2 and "already holds samples" in err
    assert cli("sample", toy_run, "--num", "3", "--out", stray, "--device", "cpu", "--overwrite")[0] == 0
    assert len(json.loads((stray / "manifest.json").read_text())) == 3


def test_the_shared_writer_refuses_too(tmp_path: Path) -> None:
    from medgen_cli.engine.outputs import write_samples
    from medgen_cli.errors import MedgenError
    from medgen_cli.contract.samples import frame_samples

    data = _data_folder(tmp_path / "real")
    frames = frame_samples(np.zeros((3, 1, 8, 8), np.float32))
    with pytest.raises(MedgenError, match="not empty"):
        write_samples(frames, data, ["npy"])
    assert sorted(p.name for p in data.iterdir()) == ["case_0.npy", "case_1.npy", "case_2.npy", "manifest.json"]
    file_out = tmp_path / "file.txt"
    file_out.write_text("x")
    with pytest.raises(MedgenError, match="is a file"):
        write_samples(frames, file_out, ["npy"])
