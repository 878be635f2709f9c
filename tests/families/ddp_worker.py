"""One training process of the DDP contract suite (``tests/families/test_ddp_contract.py``).

Run as ``python -m tests.families.ddp_worker SPEC.json``, alone or as a torchrun rank. It trains
through the engine (:func:`medgen_cli.engine.launch.train_from_config`) and, each time the trainer
saves ``latest.pt``, writes what *this rank* holds (modules, EMA, optimizers, family state, best,
step; the checkpoint itself is rank 0's only) to ``SPEC["dump"]/rank<R>.pt``.

SPEC keys: ``family``, ``overrides`` (``key=value``), ``dump`` (a folder); ``resume`` (a checkpoint
to continue from as the fork ``fork``); ``mirror`` (true: every rank reads the batches a single
process would read and keeps the single process's RNG stream, see the suite's docstring).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch


def _dump_on_save(dump: Path) -> None:
    from medgen_cli.engine import checkpoint as ckpt_io
    from medgen_cli.engine.trainer import Trainer

    save = Trainer._save

    def _save(self: Trainer, ctx: Any, names: list[str]) -> None:
        save(self, ctx, names)
        if "latest" in names:
            payload = self._payload(ctx)
            payload.pop("config")
            payload["rng"] = ckpt_io.capture_rng()
            dump.mkdir(parents=True, exist_ok=True)
            torch.save(payload, dump / f"rank{self.rank}.pt")

    Trainer._save = _save  # type: ignore[method-assign]


def _mirror() -> None:
    """Every rank reads what one process reads (rank 0 of 1) and keeps the RNG stream a single
    process has after building (the engine reseeds each rank with seed + rank otherwise)."""
    import medgen_cli.engine.trainer as trainer

    sampler, seed = trainer.ResumableSampler, trainer.seed_everything
    calls: list[int] = []

    def one_shard(length: int, batch_size: int, seed_: int, rank: int = 0, world_size: int = 1,
                  shuffle: bool = True) -> Any:
        return sampler(length, batch_size, seed_, 0, 1, shuffle)

    def first_seed_only(value: int) -> None:
        if not calls:
            seed(value)
        calls.append(value)

    trainer.ResumableSampler = one_shard  # type: ignore[assignment,misc]
    trainer.seed_everything = first_seed_only  # type: ignore[assignment]


def main(spec_path: str) -> None:
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import resume_config, train_from_config

    spec = json.loads(Path(spec_path).read_text())
    _dump_on_save(Path(spec["dump"]))
    if spec.get("mirror"):
        _mirror()
    if spec.get("resume"):
        run = Path(spec["resume"]).parents[1]
        cfg, _ = resume_config(run, spec["family"], None, [])
        train_from_config(cfg, resume=spec["resume"], fork=spec["fork"])
    else:
        train_from_config(build_config(spec["family"], None, spec["overrides"]))


if __name__ == "__main__":
    main(sys.argv[1])
