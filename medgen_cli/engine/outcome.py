"""What a training run returns, and the exception a stop by signal raises (the trainer's
outcomes, kept apart so callers can catch or read them without the trainer's imports)."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived; ``latest.pt`` was saved at ``step`` (``saved``), or the stop came
    before the first step and nothing new was saved (the run, if any, continues from ``step``).

    Attributes:
        signum: the signal that stopped training.
        run_dir: the run folder (``None``: none was created yet).
        saved: whether a checkpoint was written on the way out.
        exit_code: ``128 + signum`` (130 for SIGINT, 143 for SIGTERM), what a shell expects.
    """

    def __init__(self, step: int, run_dir: Path | None, signum: int = signal.SIGINT, saved: bool = True) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}")
        self.step = step
        self.run_dir = run_dir
        self.signum = int(signum)
        self.saved = saved

    def left(self) -> str:
        """What the stop left behind, for the user."""
        if self.saved:
            return f"latest.pt saved at step {self.step}"
        if self.run_dir is None:
            return "nothing was created"
        if self.step == 0:
            return f"{self.run_dir} holds its config.yaml and no checkpoint yet (a resume starts at step 0)"
        return f"{self.run_dir} is unchanged (latest.pt is step {self.step})"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class TrainResult:
    run_dir: Path | None
    step: int
    epoch: int
    best_value: float | None
    last_metrics: dict[str, float]
