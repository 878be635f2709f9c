"""A diffusion run rebuilds from itself: its autoencoder run may be moved or deleted (through the CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medgen_cli.cli.app import main

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny"


def _medgen(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    assert int(exc.value.code or 0) == 0, cap.err + cap.out
    return cap.err + cap.out


def _volumes(root: Path) -> Path:
    from medgen_cli.io import save_nifti

    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1)
    records = []
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            rel = f"{split}/v{i}.nii.gz"
            save_nifti((np.linalg.norm(grid - 8.0, axis=-1) < 3 + 2 * (i % 2)).astype(np.float32), root / rel)
            records.append({"file": rel, "split": split, "label": i % 2})
    (root / "manifest.json").write_text(json.dumps(records))
    return root


def test_diffusion_run_samples_and_resumes_without_its_autoencoder_run(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = _volumes(tmp_path / "data")
    runs = tmp_path / "runs"
    _medgen(capsys, "train", "autoencoder", "--config", TINY / "autoencoder.yaml", "--output-dir", runs, "--name", "ae",
            "--set", f"data.root={data}", "--set", "trainer.max_steps=2")
    ae = runs / "autoencoder" / "ae"
    _medgen(capsys, "train", "diffusion", "--config", TINY / "diffusion.yaml", "--output-dir", runs, "--name", "df",
            "--set", f"autoencoder_run={ae}", "--set", "conditioning.enabled=true", "--set", "trainer.max_steps=2")
    run = runs / "diffusion" / "df"
    # config.yaml and the checkpoint agree: what build() needs was resolved before the folder was written
    saved = yaml.safe_load((run / "config.yaml").read_text())
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["config"] == saved
    assert saved["conditioning"]["num_classes"] == 2
    assert saved["autoencoder"]["model"] == yaml.safe_load((ae / "config.yaml").read_text())["model"]

    moved = tmp_path / "elsewhere" / "df"
    shutil.copytree(run, moved)
    shutil.rmtree(runs / "autoencoder")
    out = tmp_path / "samples"
    text = _medgen(capsys, "sample", moved, "--num", "2", "--steps", "2", "--out", out, "--device", "cpu")
    assert "used checkpoints/best.pt" in text  # the checkpoint used is named
    names = sorted(p.name for p in out.iterdir())
    assert names == ["manifest.json", "preview", "sample_00000.nii.gz", "sample_00001.nii.gz"]
    assert [e["label"] for e in json.loads((out / "manifest.json").read_text())] == [0, 1]

    # resume works too, and through the Python API the run loads the same way
    _medgen(capsys, "train", "diffusion", "--resume", moved, "--set", "trainer.max_steps=3")
    assert torch.load(moved / "checkpoints" / "latest.pt", weights_only=True)["step"] == 3
    from medgen_cli.api import load_run

    assert load_run(moved).sample(1, steps=2).arrays.shape == (1, 1, 16, 16, 16)
