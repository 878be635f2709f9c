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
