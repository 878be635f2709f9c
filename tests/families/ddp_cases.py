"""The DDP case of every family: its contract case (:mod:`tests.families.contract_cases`) plus
what two processes need (a per-rank batch the data splits into, a few steps) and the settings
counted in *images*, which the single-process reference halves (see
:mod:`tests.families.test_ddp_contract`).

``tests/families/test_ddp_contract.py`` runs every case; a registered family without one fails
there. A case may be a variant of a family (``sparse-gan/minkowski``): its ``family`` names it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path


import pytest

from tests.families.contract_cases import CASES

#: Steps of a straight run (2K); the resumed run stops at K = STEPS / 2 and continues.
STEPS = 4


@dataclass(frozen=True)
class DDPCase:
    """How to train one family under DDP.

    Attributes:
        family: registry name.
        overrides: extra ``key=value`` on top of the contract case (both runs).
        per_image: ``key: value`` of settings counted in images (the DDP value): the reference
            (one process, the per-rank batch) gets half of each, as a global batch twice its own
            would count them twice as fast.
        rtol: tolerance of "DDP equals the single process" (0: bit-identical).
        why: where rtol > 0, why the ops are not bit-reproducible.
        per_rank_records: family-state entries that are each rank's own *logging* records (the
            latest G and regulariser losses, shown between G steps, like every train metric a
            per-rank value logged as the ranks' mean): left out of "the ranks agree".
    """

    family: str
    overrides: tuple[str, ...] = ()
    per_image: dict[str, float] = field(default_factory=dict)
    rtol: float = 0.0
    why: str = ""
    per_rank_records: tuple[str, ...] = ()

    def base(self, request: pytest.FixtureRequest, tmp: Path) -> list[str]:
        """The contract case's overrides, then this case's."""
        return [*CASES[self.family].overrides(request, tmp), *self.overrides]


def minkowski_available() -> bool:
    if importlib.util.find_spec("MinkowskiEngine") is None:
        return False
    try:
        from medgen_cli.sparse.minkowski_backend import import_minkowski

        import_minkowski()
    except Exception:  # noqa: BLE001 - not built for this torch: the variant is skipped
        return False
    return True


GAN_LOGS = ("last_g",)

#: One line per registered family (and per variant); keys are case ids.
DDP_CASES: dict[str, DDPCase] = {
    "toy": DDPCase("toy", ("model.dropout=0.2",)),
    "autoencoder": DDPCase("autoencoder"),
    "diffusion": DDPCase("diffusion"),
    "fastgan": DDPCase("fastgan", per_rank_records=GAN_LOGS),
    "sagan": DDPCase("sagan", per_rank_records=GAN_LOGS),
    # ADA adjusts every 2 steps; R1 and path length every 2 steps (lazy); γ fixed, since its auto
    # value depends on the global batch.
    "stylegan2": DDPCase("stylegan2", ("augment.ada_interval=2", "loss.r1_gamma=0.5"),
                         per_image={"model.ema_halflife_images": 40, "augment.ada_speed_images": 64},
                         per_rank_records=(*GAN_LOGS, "last_reg")),
    "sparse-gan": DDPCase("sparse-gan", per_rank_records=GAN_LOGS),
    "sparse-gan/minkowski": DDPCase("sparse-gan", ("sparse.backend=minkowski",), per_rank_records=GAN_LOGS),
    "dif-gaussian": DDPCase("dif-gaussian"),
}

