"""The EMA copies' update rule: the family's average for floating tensors, an exact copy for the rest.

``AveragedModel(use_buffers=True)`` hands every buffer to the average, grouped by dtype. An
integer buffer — an index grid, BatchNorm's batch counter — cannot be averaged: torch's rule
``ema·d + model·(1 − d)`` goes through floats and truncates on the copy back (8·d + 8·(1 − d)
can become 7), so a coordinate grid drifted in the EMA copy only, and validation and sampling
during training drew from a different generator than the same weights loaded afterwards.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

MultiAvgFn = Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]


def exact_non_float(avg: MultiAvgFn) -> MultiAvgFn:
    """``avg`` for floating (and complex) groups; integer and bool groups copied from the model."""
    @torch.no_grad()
    def update(ema: list[torch.Tensor], model: list[torch.Tensor], n_averaged: Any) -> None:
        if torch.is_floating_point(ema[0]) or torch.is_complex(ema[0]):
            avg(ema, model, n_averaged)
            return
        for e, m in zip(ema, model):
            e.copy_(m)

    return update


def warmup_ema_fn(decay: float) -> MultiAvgFn:
    """``AveragedModel`` ``multi_avg_fn`` with decay ``min(decay, (1 + n) / (10 + n))`` at update ``n``.

    A fixed decay of 0.999 keeps ~37% of the random initial weights after 1,000 steps, so early
    samples (and validation, which uses the EMA) come from a model still a third random, and a
    best.pt chosen early (a diffusion model on a few hundred shapes is best after ~1,500 steps)
    is one; the warm-up follows the online weights closely at first and reaches ``decay`` after
    ~10/(1 − decay) updates (diffusers' ``EMAModel`` rule when ``use_ema_warmup`` is off).
    Floating tensors only: the trainer copies integer buffers (the generator's seed grid,
    BatchNorm's counter) itself (:func:`medgen_cli.engine.ema.exact_non_float`).
    """
    @torch.no_grad()
    def update(ema: list[torch.Tensor], model: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema, model, 1.0 - d)

    return update
