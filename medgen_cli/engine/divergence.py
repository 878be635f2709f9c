"""Non-finite training: find it the step it happens and stop before it reaches a checkpoint.

A NaN or inf loss, gradient or weight never recovers: every later step and checkpoint would be
NaN too, and the run would still end "done". The trainer checks each step's loss and gradient
metrics (the floats ``train_step`` returns, so the check costs nothing) and the weights before
each checkpoint (a huge learning rate can push them to inf while the loss of that step was still
finite), and stops with one line; ``latest.pt`` keeps the last finite state. A validation metric
that is not finite (``psnr=inf`` on constant data) is reported and never becomes the best.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import torch

from medgen_cli.config.loading import RESUME_MUTABLE_LEAVES as LR_LEAVES
from medgen_cli.errors import MedgenError


def nonfinite_metric(metrics: dict[str, float], bad_grads: Iterable[str] = ()) -> str | None:
    """``"train/loss/l1 = nan"`` for the first loss metric that is not finite, else a line naming
    the first optimizer whose gradients were not finite (``bad_grads``, from
    :meth:`TrainContext.step`); ``None`` when all are finite.

    Only losses and gradients are judged: diagnostics such as ``aug/rt`` may be NaN by design,
    ``grad_norm`` is NaN when an optimizer had no gradient, and under fp16 loss scaling an inf
    gradient is routine (the scaler skips that step), so gradients are judged where they are made.
    """
    for name, value in metrics.items():
        bare = name.removeprefix("train/")
        if bare.startswith("loss") and not math.isfinite(value):
            return f"train/{bare} = {value}"
    for opt in bad_grads:
        norms = [f"train/{k.removeprefix('train/')} = {v}" for k, v in metrics.items()
                 if k.removeprefix("train/").startswith("grad_norm") and not math.isfinite(v)]
        return f"the gradient of optimizer '{opt}'" + (f" ({norms[0]})" if norms else "") + " is not finite"
    return None


def step_problem(metrics: dict[str, float], ctx: Any, world_size: int) -> str | None:
    """:func:`nonfinite_metric` of one step (clearing ``ctx.bad_grads``); with several processes,
    any rank's problem is every rank's, so all stop at the same step."""
    problem = nonfinite_metric(metrics, ctx.bad_grads)
    ctx.bad_grads.clear()
    if world_size > 1:
        flag = torch.tensor([0.0 if problem is None else 1.0], device=ctx.device)
        torch.distributed.all_reduce(flag)
        if flag.item() > 0 and problem is None:
            problem = "another process's loss or gradient is not finite"
    return problem


def nonfinite_val_warnings(metrics: dict[str, float], key: str | None, step: int) -> list[str]:
    """One warning per validation metric that is not finite (``val/psnr=inf`` on constant data)."""
    key = None if key is None else key.removeprefix("val/")
    return [f"{name}={value} at step {step} is not finite"
            + (" (not a candidate for best.pt)" if name.removeprefix("val/") == key else "")
            + ": constant or empty validation data, or a diverged model?"
            for name, value in metrics.items() if not math.isfinite(value)]


def nonfinite_weights(modules: dict[str, torch.nn.Module], ema: dict[str, Any]) -> str | None:
    """The name of the first module (or EMA copy) with a non-finite parameter or float buffer."""
    named = [(n, m) for n, m in modules.items()] + [(f"{n} (EMA)", a) for n, a in ema.items()]
    for name, module in named:
        for t in (*module.parameters(), *module.buffers()):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return name
    return None


def lr_keys(config: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of the learning rates in a config dict (``model.lr``, ``optimizer.lr_g``, ...)."""
    keys: list[str] = []
    for k, v in config.items():
        if isinstance(v, dict):
            keys += lr_keys(v, f"{prefix}{k}.")
        elif k in LR_LEAVES:
            keys.append(f"{prefix}{k}")
    return keys


def divergence_error(step: int, what: str, family: str, run_root: Path | None, last_saved: int | None,
                     config: dict[str, Any]) -> MedgenError:
    """The one line that stops a run whose training became non-finite at ``step``."""
    keys = lr_keys(config)
    lower = f" --set {keys[0]}=<lower>" if keys else ""
    if run_root is not None and last_saved is not None:
        hint = (f"latest.pt (step {last_saved}) holds the last finite state: resume with a lower learning rate, "
                f"medgen train {family} --resume {run_root}{lower}")
    else:
        hint = "no checkpoint was written; lower the learning rate" + (f" ({', '.join(keys)})" if keys else "") + \
            " or check the data"
    return MedgenError(f"training stopped at step {step}: {what} (non-finite); nothing after step "
                       f"{last_saved or 0} was saved", hint)
