"""Which validation is ``best.pt``, and what a plateau of the key metric does (one rule for every family).

A family names its key metric (``val/fid``, ``val/psnr``); the trainer hands every validation's
metrics to :class:`BestSelection`, which decides:

* **best.pt** — the best key value among evaluations whose *guard* metric clears a floor
  (``trainer.best``). The guard is a metric where higher is better (``coverage``): a GAN that
  drops a mode can still lower FID, and its coverage (the share of real images with a sample
  nearby) says so. The floor is ``max(guard_min, guard_fraction × the highest guard value seen
  so far in the run)``, so it adapts to the data set (coverage of a good model is 0.44 on one
  set and 0.99 on another) and to the model. When the floor rises above ``best.pt``'s own guard
  value, ``best.pt`` no longer qualifies: the next evaluation that clears the floor replaces it,
  whatever its key value.
* **plateau** — after ``trainer.lr_schedule.plateau_patience`` evaluations without a new
  ``best.pt`` every learning rate is multiplied by ``plateau_factor`` (down to
  ``plateau_min_factor``; ReduceLROnPlateau on top of the schedule), and after
  ``trainer.early_stop_patience`` evaluations without one training stops.

Only evaluations that produced a finite key metric count (a GAN's validation is empty when FID is
not due). The whole state lives in the checkpoint's ``best`` record, so a resume continues with
the same best value, floor, patience counter and LR factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def val_name(metric: str | None) -> str | None:
    """``fid`` → ``val/fid`` (names in configs and families may omit the prefix)."""
    if metric is None:
        return None
    return metric if metric.startswith("val/") else f"val/{metric}"


@dataclass
class Verdict:
    """What one evaluation changed.

    Attributes:
        new_best: write ``best.pt`` now.
        lr_changed: the plateau factor changed: apply it to the optimizers now.
        stop: stop training (``early_stop_patience`` evaluations without a new best).
        floor: the guard floor this evaluation was judged against (``None``: no guard).
        notes: lines for the log.
    """

    new_best: bool = False
    lr_changed: bool = False
    stop: bool = False
    floor: float | None = None
    notes: list[str] = field(default_factory=list)


class BestSelection:
    """The best.pt rule and the plateau counters of one run.

    Args:
        key: the family's key metric (``None``: no best.pt, no plateau).
        mode: ``"min"`` or ``"max"`` for ``key``.
        guard: the guard metric (``None``: every finite evaluation is a candidate).
        guard_fraction: the floor's share of the highest guard value seen.
        guard_min: an absolute floor.
        plateau_patience: evaluations without a new best before the LR is lowered (0: never).
        plateau_factor: what the LR is multiplied by at each plateau.
        plateau_min_factor: the LR factor never goes below this.
        stop_patience: evaluations without a new best before training stops (0: never).
    """

    def __init__(self, key: str | None, mode: str = "min", guard: str | None = None, guard_fraction: float = 0.0,
                 guard_min: float = 0.0, plateau_patience: int = 0, plateau_factor: float = 0.5,
                 plateau_min_factor: float = 0.0, stop_patience: int = 0) -> None:
        self.key, self.mode, self.guard = val_name(key), mode, val_name(guard)
        self._names = (key, guard)  # as the family and config name them: what the checkpoint's record holds
        self.guard_fraction, self.guard_min = guard_fraction, guard_min
        self.plateau_patience, self.plateau_factor, self.plateau_min_factor = (plateau_patience, plateau_factor,
                                                                               plateau_min_factor)
        self.stop_patience = stop_patience
        self.value: float | None = None  # best.pt's key value
        self.step: int | None = None  # best.pt's step
        self.best_guard: float | None = None  # best.pt's guard value
        self.guard_max: float | None = None  # the highest guard value seen in the run
        self.since_best = 0  # evaluations since the last new best.pt
        self.since_lr_change = 0  # evaluations since the last plateau decay (or the last new best)
        self.lr_factor = 1.0
        self._missing_noted = False

    @classmethod
    def from_config(cls, key: str | None, mode: str, trainer_cfg: Any) -> BestSelection:
        """From ``trainer.best``, ``trainer.lr_schedule.plateau_*`` and ``trainer.early_stop_patience``."""
        b, s = trainer_cfg.best, trainer_cfg.lr_schedule
        return cls(key, mode, b.guard, b.guard_fraction, b.guard_min, s.plateau_patience, s.plateau_factor,
                   s.plateau_min_factor, trainer_cfg.early_stop_patience)

    # ---- the rule -----------------------------------------------------------------------------
    def floor(self) -> float | None:
        """The guard value an evaluation must reach now (``None``: no guard)."""
        if self.guard is None:
            return None
        return max(self.guard_min, self.guard_fraction * self.guard_max if self.guard_max is not None else 0.0)

    def _better(self, value: float) -> bool:
        if self.value is None:
            return True
        return value < self.value if self.mode == "min" else value > self.value

    @property
    def stopped(self) -> bool:
        """``early_stop_patience`` evaluations passed without a new best.pt."""
        return self.stop_patience > 0 and self.since_best >= self.stop_patience

    def judge(self, metrics: dict[str, float], step: int) -> Verdict:
        """Take one validation's metrics (``val/`` names) at ``step``; say what to do."""
        verdict = Verdict()
        value = metrics.get(self.key) if self.key is not None else None
        if value is None or not math.isfinite(value):
            return verdict
        guard = metrics.get(self.guard) if self.guard is not None else None
        if guard is not None and not math.isfinite(guard):
            guard = None
        if self.guard is not None and guard is None and not self._missing_noted:
            # e.g. coverage needs more than k = 5 images: without it the rule cannot say "dropped a mode".
            verdict.notes.append(f"{self.guard} is missing at step {step}: best.pt is judged on {self.key} alone")
            self._missing_noted = True
        floor = None
        if guard is not None:
            self.guard_max = guard if self.guard_max is None else max(self.guard_max, guard)
            floor = verdict.floor = self.floor()
        eligible = guard is None or floor is None or guard >= floor
        # best.pt stops qualifying when the floor rises above its own guard value.
        stale = floor is not None and self.value is not None and self.best_guard is not None and self.best_guard < floor
        if eligible and (stale or self._better(value)):
            if stale and not self._better(value):
                verdict.notes.append(f"best.pt (step {self.step}) has {self.guard}={self.best_guard:.4g} under the "
                                     f"floor {floor:.4g}: replaced although {self.key} is not better")
            self.value, self.step, self.best_guard = value, step, guard
            self.since_best = self.since_lr_change = 0
            verdict.new_best = True
            return verdict
        if not eligible and self._better(value):
            verdict.notes.append(f"{self.key}={value:.5g} at step {step} would be best but {self.guard}={guard:.4g} "
                                 f"is under the floor {floor:.4g}: not best.pt")
        self.since_best += 1
        self.since_lr_change += 1
        self._plateau(verdict, step)
        return verdict

    def _plateau(self, verdict: Verdict, step: int) -> None:
        if (self.plateau_patience > 0 and self.since_lr_change >= self.plateau_patience
                and self.lr_factor > self.plateau_min_factor):
            self.lr_factor = max(self.lr_factor * self.plateau_factor, self.plateau_min_factor)
            self.since_lr_change = 0
            verdict.lr_changed = True
            verdict.notes.append(f"no new best.pt in {self.plateau_patience} evaluations: learning rates × "
                                 f"{self.lr_factor:.4g} of the schedule from step {step}")
        if self.stopped:
            verdict.stop = True
            verdict.notes.append(f"no new best.pt in {self.since_best} evaluations (trainer.early_stop_patience="
                                 f"{self.stop_patience}): training stops at step {step}")

    # ---- checkpoint -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's ``best`` record (``metric``, ``value``, ``step``, ``mode`` as before, and
        the guard and plateau state)."""
        return {"metric": self._names[0], "value": self.value, "step": self.step, "mode": self.mode,
                "guard_metric": self._names[1], "guard": self.best_guard, "guard_max": self.guard_max,
                "since_best": self.since_best, "since_lr_change": self.since_lr_change, "lr_factor": self.lr_factor}

    def load_state_dict(self, record: dict[str, Any]) -> None:
        """Restore from a ``best`` record; records of older medgens (no guard or plateau state) start
        those at their initial values."""
        self.value, self.step = record.get("value"), record.get("step")
        # A record written with another guard metric (or none): its guard values mean nothing here.
        same_guard = val_name(record.get("guard_metric")) == self.guard
        self.best_guard = record.get("guard") if same_guard and self.value is not None else None
        self.guard_max = record.get("guard_max") if same_guard else None
        self.since_best = int(record.get("since_best", 0))
        self.since_lr_change = int(record.get("since_lr_change", 0))
        self.lr_factor = float(record.get("lr_factor", 1.0))
