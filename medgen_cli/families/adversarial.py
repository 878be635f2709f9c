"""The update schedule every adversarial family follows (sagan, stylegan2, sparse-gan).

``n_critic`` means one thing everywhere: **a training step consumes one batch and makes one
discriminator (critic) update; the generator is updated on every ``n_critic``-th step**. So
``trainer.max_steps`` counts discriminator updates, each of them sees fresh real data (as in
WGAN-GP's algorithm, where every critic iteration samples a new real batch), and the generator
makes ``max_steps / n_critic`` updates. The generator's metrics (``loss/g``, ``grad_norm/g``)
between two of its updates are those of its latest update; they are absent until its first.
"""

from __future__ import annotations

from typing import Any


def generator_due(step: int, n_critic: int) -> bool:
    """Whether the step that follows ``step`` completed steps updates the generator too.

    Args:
        step: optimizer steps completed so far (``ctx.global_step``).
        n_critic: discriminator updates per generator update (>= 1).
    """
    return (step + 1) % n_critic == 0


class GeneratorMetrics:
    """The generator's latest metrics, reported on every step and kept across a resume."""

    def __init__(self) -> None:
        self.latest: dict[str, float] = {}

    def update(self, metrics: dict[str, float]) -> None:
        self.latest = {k: float(v) for k, v in metrics.items()}

    def state_dict(self) -> dict[str, Any]:
        return dict(self.latest)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.latest = {str(k): float(v) for k, v in state.items()}
