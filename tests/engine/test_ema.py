"""The EMA copies average floating tensors and copy integer buffers exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from medgen_cli.contract.family import warmup_ema_fn
from medgen_cli.engine.ema import exact_non_float


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


def _first_update(fam) -> float:
    """The EMA weight after one update (n_averaged = 1) from 0 towards 1 under ``fam``'s rule."""
    ema = [torch.zeros(3)]
    fam.ema_avg_fn(0.999)(ema, [torch.ones(3)], torch.tensor(1))
    return float(ema[0][0])


@pytest.mark.parametrize("family", ["autoencoder", "diffusion", "sparse-gan"])
def test_every_family_warms_its_ema_up_unless_an_old_run_did_not(family: str) -> None:
    """A new run's EMA follows the online weights at first: decay (1+1)/(10+1) at update 1, where a
    fixed 0.999 would move 0.1% of the way (and a diffusion best.pt at step 1,250 was still 29%
    random initial weights). A run saved by medgen 0.4.1 resumes with the decay it trained with:
    fixed for the autoencoder and diffusion, warmed up for sparse-gan (which always had it)."""
    from medgen_cli.config.build import build_config
    from medgen_cli.config.migrations import migrate_config
    from medgen_cli.contract.registry import get_spec

    cls = get_spec(family).family_class()
    assert math.isclose(_first_update(cls(build_config(family))), 1 - 2 / 11, rel_tol=1e-6)
    saved = build_config(family).model_dump(mode="json")
    saved["trainer"]["ema"].pop("warmup")
    if family == "sparse-gan":
        saved.setdefault("validation", {})["ema_warmup"] = True
    old, _ = migrate_config(saved, "0.4.1")
    expect = 1 - 2 / 11 if family == "sparse-gan" else 1 - 0.999
    assert math.isclose(_first_update(cls(build_config(family, base=old))), expect, rel_tol=1e-6)
