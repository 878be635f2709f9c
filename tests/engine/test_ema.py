"""The EMA copies average floating tensors and copy integer buffers exactly."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from medgen_cli.engine.ema import exact_non_float
from medgen_cli.families.sparse_gan.validation import warmup_ema_fn


class _Indexed(nn.Module):
    """A weight and an integer coordinate grid (like the sparse generator's seed grid)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.register_buffer("grid", torch.arange(0, 64, 8), persistent=False)
        self.register_buffer("count", torch.tensor(0))


def _run(avg_fn, updates: int = 200) -> tuple[_Indexed, AveragedModel, list[torch.Tensor]]:
    model = _Indexed()
    ema = AveragedModel(model, multi_avg_fn=exact_non_float(avg_fn), use_buffers=True)
    weights = []
    for i in range(updates):
        with torch.no_grad():
            model.w.add_(torch.tensor([1.0, -0.5, 0.25]))
            model.count.add_(1)
        ema.update_parameters(model)
        weights.append(model.w.detach().clone())
    return model, ema, weights


def test_integer_buffers_follow_the_model_exactly() -> None:
    for fn in (get_ema_multi_avg_fn(0.9), warmup_ema_fn(0.999)):
        model, ema, _ = _run(fn)
        assert torch.equal(ema.module.grid, torch.arange(0, 64, 8)), ema.module.grid
        assert torch.equal(ema.module.count, model.count)


def test_floating_tensors_are_still_averaged() -> None:
    decay = 0.9
    model, ema, weights = _run(get_ema_multi_avg_fn(decay), updates=20)
    expect = weights[0].clone()  # the first update copies
    for w in weights[1:]:
        expect = decay * expect + (1 - decay) * w
    assert torch.allclose(ema.module.w, expect, atol=1e-5)
    assert not torch.allclose(ema.module.w, model.w)
