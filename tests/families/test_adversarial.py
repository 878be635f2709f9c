"""The one n_critic rule of the adversarial families."""

from __future__ import annotations

from medgen_cli.families.adversarial import GeneratorMetrics, generator_due


def test_generator_every_nth_step() -> None:
    assert [generator_due(s, 1) for s in range(3)] == [True, True, True]
    assert [generator_due(s, 3) for s in range(7)] == [False, False, True, False, False, True, False]


def test_generator_metrics_survive_a_state_round_trip() -> None:
    a = GeneratorMetrics()
    a.update({"loss/g": 1.5, "grad_norm/g": 2})
    b = GeneratorMetrics()
    b.load_state_dict(a.state_dict())
    assert b.latest == {"loss/g": 1.5, "grad_norm/g": 2.0}
