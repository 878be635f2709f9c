"""The contract case of every family: the tiny config it trains on, as ``key=value`` overrides.

``tests/families/test_contract.py`` runs the shared suite (:func:`tests.contract.check_family_contract`)
over every family in the registry; a registered family without a case here fails that test, so a
new family is covered by registering it and adding its line. A case builds its test data in a
scratch folder or takes it from a session fixture (``request.getfixturevalue``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny"


def preset_overrides(module: str, *sections: str) -> list[str]:
    """``configs/tiny/<module>.yaml`` as overrides (all of it, or only ``sections``), without ``family``."""
    data = yaml.safe_load((TINY / f"{module}.yaml").read_text())
    data.pop("family", None)
    if sections:
        data = {k: v for k, v in data.items() if k in sections}

    def flat(d: dict, prefix: str = "") -> list[str]:
        out: list[str] = []
        for k, v in d.items():
            out += flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}={json.dumps(v)}"]
        return out

    return flat(data)


def _blobs(tmp: Path) -> Path:
    from medgen_cli.families.gan2d.synthetic import write_blob_folder

    return write_blob_folder(tmp / "blobs", n=16, resolution=16)


def _gan2d(module: str) -> Callable[[pytest.FixtureRequest, Path], list[str]]:
    return lambda request, tmp: [*preset_overrides(module), f"data.root={_blobs(tmp)}"]


def _sparse_volumes(tmp: Path) -> Path:
    """Balls of random centre, radius and value at 16³ under tmp/sg_data/{train,val}."""
    import numpy as np

    from medgen_cli.io import save_nifti

    root = tmp / "sg_data"
    rng = np.random.default_rng(0)
    g = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1)
    for split, n in [("train", 4), ("val", 2)]:
        for i in range(n):
            centre, radius = rng.uniform(5, 11, 3), rng.uniform(2.5, 4.0)
            vol = (np.linalg.norm(g - centre, axis=-1) < radius) * rng.uniform(0.5, 1.0)
            save_nifti(vol.astype(np.float32), root / split / f"v{i}.nii.gz", affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    return root


def _sparse_gan(request: pytest.FixtureRequest, tmp: Path) -> list[str]:
    return [*preset_overrides("sparse_gan"), f"data.root={_sparse_volumes(tmp)}", "sparse.backend=torch"]


def _autoencoder(request: pytest.FixtureRequest, tmp: Path) -> list[str]:
    data = request.getfixturevalue("make_volumes")(tmp / "vols")
    return [f"data.root={data}", "trainer.device=cpu", "loss.adv_start_step=1", "data.size=[16, 16, 16]",
            *preset_overrides("autoencoder", "model")]


def _diffusion(request: pytest.FixtureRequest, tmp: Path) -> list[str]:
    data = request.getfixturevalue("make_volumes")(tmp / "data")
    ae_run = request.getfixturevalue("train_ae")(data, tmp / "ae_runs", steps=4, extra=["trainer.val_every=4"])
    return [f"autoencoder_run={ae_run}", "trainer.device=cpu", "conditioning.enabled=true",
            *preset_overrides("diffusion", "unet"), "sample.steps=2"]


def _dif_gaussian(request: pytest.FixtureRequest, tmp: Path) -> list[str]:
    return [f"data.root={request.getfixturevalue('cbct_data')}", "data.points_per_case=256",
            *preset_overrides("dif_gaussian", "model"), "optimizer.kind=adam", "trainer.batch_size=2"]


@dataclass(frozen=True)
class ContractCase:
    """How to run the contract on one family.

    Attributes:
        overrides: ``(request, scratch folder) -> key=value overrides`` of a tiny config.
        steps: total steps K of the suite (it stops at K/2 and resumes).
        rtol: tolerance of "the same next metrics after resume" (0: bit-identical).
    """

    overrides: Callable[[pytest.FixtureRequest, Path], list[str]]
    steps: int = 4
    rtol: float = 0.0


#: One line per registered family (registry name).
CASES: dict[str, ContractCase] = {
    "sagan": ContractCase(_gan2d("sagan")),
    "stylegan2": ContractCase(_gan2d("stylegan2")),
    "fastgan": ContractCase(_gan2d("fastgan")),
    "sparse-gan": ContractCase(_sparse_gan),
    "autoencoder": ContractCase(_autoencoder),
    "diffusion": ContractCase(_diffusion),
    "dif-gaussian": ContractCase(_dif_gaussian),
    "toy": ContractCase(lambda request, tmp: ["data.n_train=24", "trainer.batch_size=4", "trainer.ema.enabled=true"],
                        steps=8),
}
