"""Fixtures shared by the image/volume family tests (autoencoder, diffusion, rectified flow).

Each helper is a fixture that returns a function, so test modules never import each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_AE = REPO / "configs" / "tiny" / "autoencoder.yaml"
#: A non-trivial voxel-to-world matrix, so "the data's affine" is distinguishable from identity.
AFFINE = np.array([[2.0, 0, 0, -10.0], [0, 2.0, 0, 5.0], [0, 0, 3.0, 7.0], [0, 0, 0, 1.0]])


def _make_volumes(root: Path, n_train: int = 4, n_val: int = 2, size: int = 16, seed: int = 0) -> Path:
    """Balls of two radii (label 0: small, 1: large) as NIfTI under root/{train,val} + manifest.json."""
    from medgen_cli.io import save_nifti

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
    records = []
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            label = i % 2
            centre = rng.uniform(size * 0.35, size * 0.65, 3)
            vol = (np.linalg.norm(grid - centre, axis=-1) < size * (0.18 + 0.12 * label)).astype(np.float32)
            rel = f"{split}/vol_{i:03d}.nii.gz"
            save_nifti(vol, root / rel, affine=AFFINE, overwrite=True)
            records.append({"file": rel, "split": split, "label": label})
    (root / "manifest.json").write_text(json.dumps(records))
    return root


def ae_overrides(data: Path, out: Path) -> list[str]:
    return [f"data.root={data}", f"output_dir={out}", "trainer.log_every=1"]


def _train_ae(data: Path, out: Path, name: str = "ae", steps: int = 6, extra: list[str] | None = None) -> Path:
    """A tiny autoencoder run (configs/tiny/autoencoder.yaml) on ``data``."""
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    cfg = build_config("autoencoder", TINY_AE, [*ae_overrides(data, out), f"name={name}",
                                                  f"trainer.max_steps={steps}", *(extra or [])])
    run = train_from_config(cfg)
    assert run is not None
    return run


def _metrics(run: Path, key: str) -> list[float]:
    """The values of ``key`` in ``run``'s metrics.jsonl, by step."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [rec[key] for rec in sorted(lines, key=lambda r: r["step"]) if key in rec]


@pytest.fixture(scope="session")
def volume_affine() -> np.ndarray:
    """The affine every :func:`make_volumes` volume carries."""
    return AFFINE.copy()


@pytest.fixture(scope="session")
def make_volumes() -> Callable[..., Path]:
    return _make_volumes


@pytest.fixture(scope="session")
def train_ae() -> Callable[..., Path]:
    return _train_ae


@pytest.fixture(scope="session")
def metrics() -> Callable[[Path, str], list[float]]:
    return _metrics


@pytest.fixture(scope="session")
def contract_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``contract_run(name)``: the uninterrupted run of the shared contract suite on family ``name``
    (its case in :mod:`tests.families.contract_cases`), run once per session and shared by the
    registry-wide suite and the family's own tests."""
    from tests.contract import check_family_contract
    from tests.families.contract_cases import CASES

    done: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in done:
            case = CASES[name]
            tmp = tmp_path_factory.mktemp(f"contract-{name}")
            done[name] = check_family_contract(name, case.overrides(request, tmp), tmp, steps=case.steps,
                                               rtol=case.rtol)
        return done[name]

    return run
