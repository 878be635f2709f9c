"""Learning-rate multipliers (warm-up x schedule) applied to every optimizer through LambdaLR."""

from __future__ import annotations

import math
from typing import Any, Callable

from medgen_cli.contract.config import LRScheduleConfig


def lr_multiplier(cfg: LRScheduleConfig, max_steps: Callable[[], int]) -> Callable[[int], float]:
    """Return ``f(step) -> factor`` for ``torch.optim.lr_scheduler.LambdaLR``.

    ``max_steps`` is a callable so a resume that raises ``trainer.max_steps`` stretches a cosine
    schedule instead of restarting it.
    """

    def warmup(step: int) -> float:
        if cfg.skip_warmup or cfg.warmup_steps == 0:
            return 1.0
        return min(1.0, (step + 1) / cfg.warmup_steps)

    def schedule(step: int) -> float:
        s = max(step - (0 if cfg.skip_warmup else cfg.warmup_steps), 0)
        if cfg.kind == "constant":
            return 1.0
        if cfg.kind == "step":
            return cfg.gamma ** (s // cfg.step_size)
        if cfg.kind == "exponential":
            return cfg.gamma**s
        total = max(max_steps() - (0 if cfg.skip_warmup else cfg.warmup_steps), 1)
        frac = min(s / total, 1.0)
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))

    return lambda step: warmup(step) * schedule(step)


def apply_base_lrs(schedulers: dict[str, Any], built: dict[str, list[float]]) -> list[str]:
    """Give each ``LambdaLR`` (and its optimizer) the base learning rates ``built`` from the
    config, where they differ from those a restored checkpoint brought; the schedule's position is
    kept. Returns the names of the optimizers that changed.

    A checkpoint's optimizer and scheduler states carry the learning rates of the run that wrote
    them; without this, a resume that lowers ``lr`` (e.g. after a divergence) would change nothing.
    """
    changed = []
    for name, sch in schedulers.items():
        new = built[name]
        if list(sch.base_lrs) == new:
            continue
        sch.base_lrs = list(new)
        for group, base, fn in zip(sch.optimizer.param_groups, new, sch.lr_lambdas):
            group["initial_lr"] = base
            group["lr"] = base * fn(sch.last_epoch)
        changed.append(name)
    return changed
