"""Load a trained run for inference: config + checkpoint → a built family with its best weights.

EMA weights are used when the run kept an EMA copy (the online weights otherwise), matching what
validation and ``best.pt`` were judged on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medgen_cli.contract.context import InferenceContext
from medgen_cli.errors import MedgenError
from medgen_cli.contract.family import Family


@dataclass
class LoadedRun:
    """A family ready for inference."""

    run_dir: Path
    family: Family
    ctx: InferenceContext
    checkpoint: dict[str, Any]
    source: Any = None  # the FoundCheckpoint it came from (path, skipped candidates)

    @property
    def step(self) -> int:
        return int(self.checkpoint["step"])

    def describe(self) -> list[str]:
        """The lines that name the checkpoint used (and any unreadable one skipped on the way)."""
        if self.source is None:
            return []
        return [*(f"[yellow]skipped unreadable checkpoint {note}[/]" for note in self.source.skipped),
                f"used {self.source.describe()}"]

    def report(self, paths: list[Path], out: Path) -> None:
        from rich.console import Console

        console = Console(stderr=True)
        for line in self.describe():
            console.print(line, highlight=False)
        console.print(f"[green]wrote {len(paths)} file(s)[/] to {out}", highlight=False)


def default_out(run_dir: Path, kind: str) -> Path:
    """``RUN/samples/<kind>-<timestamp>``."""
    return Path(run_dir) / "samples" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def load_run(run_dir: str | Path, checkpoint: str = "best", device: str = "auto", use_ema: bool = True) -> LoadedRun:
    """Rebuild the family of ``run_dir`` and load a checkpoint's weights (EMA when present).

    Raises:
        MedgenError: not a run directory, no checkpoint, or a checkpoint that does not fit.
    """
    from medgen_cli.engine import checkpoint as ckpt_io
    from medgen_cli.config.build import build_config
    from medgen_cli.config.migrations import load_run_config, read_saved_config
    from medgen_cli.engine.rundir import existing_run_dir
    from medgen_cli.devices import resolve_device
    from medgen_cli.contract.registry import get_spec

    run = existing_run_dir(run_dir)
    found = ckpt_io.find_checkpoint(run.root, checkpoint)
    if found is None:
        raise MedgenError(f"{run.root} has no checkpoints yet", "train it first (medgen train ...)")
    path, ck = found.path, found.ckpt
    # Both carry the medgen version that wrote them; an older layout is migrated first.
    saved = (read_saved_config(ck["config"], ck.get("medgen_version")) if ck.get("config")
             else load_run_config(run.config))
    spec = get_spec(ck["family"])
    cfg = build_config(spec.name, base=saved)
    dev = resolve_device(device)
    family = spec.family_class()(cfg)
    family.run_dir = run.root
    family.build(dev)
    ckpt_io.load_module_states(family.modules, ck.get("modules", {}), path)
    if use_ema:
        # AveragedModel state: "module.<param>" entries plus "n_averaged".
        inner = {name: {k[len("module."):]: v for k, v in state.items() if k.startswith("module.")}
                 for name, state in ck.get("ema", {}).items()}
        ckpt_io.load_module_states({n: family.modules[n] for n in inner if n in family.modules}, inner, path)
    family.load_state_dict(ck.get("family_state", {}))
    for module in family.modules.values():
        module.eval()
    from medgen_cli.progress import track

    ctx = InferenceContext(device=dev, run_dir=run.root, modules=family.modules, progress=track)
    return LoadedRun(run_dir=run.root, family=family, ctx=ctx, checkpoint=ck, source=found)
