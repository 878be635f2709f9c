"""FID-tracked validation for the 2D GANs: a schedule (frequent early, sparser later) and a lazy
:class:`~medgen_cli.metrics.fid.FIDTracker` that tolerates missing Inception weights."""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch

from medgen_cli.errors import MedgenError


def fid_every(schedule: list[tuple[int, int]], step: int) -> int:
    """The evaluation interval at ``step``: the ``every`` of the first ``(until, every)`` pair
    with ``step <= until``; the last pair's ``every`` continues after its ``until``."""
    for until, every in schedule:
        if step <= until:
            return int(every)
    return int(schedule[-1][1])


class FIDState:
    """When FID is due, whether it is available, and the tracker once built.

    Args:
        cfg: the family's :class:`~medgen_cli.families.gan2d.config.FIDConfig`.
        require: raise instead of continuing when the weights are missing (``--require-fid``).
    """

    def __init__(self, cfg: Any, require: bool = False) -> None:
        self.cfg = cfg
        self.require = require
        self.last_step: int | None = None
        self.tracker: Any = None
        self.unavailable: str | None = None

    def due(self, step: int) -> bool:
        """True when ``step`` is at least one schedule interval after the last evaluation."""
        if not self.cfg.enabled or self.unavailable is not None:
            return False
        if self.last_step is None:
            return step > 0
        return step - self.last_step >= fid_every(self.cfg.schedule, step)

    def build(self, real_images: Callable[[], torch.Tensor], device: torch.device) -> bool:
        """Create the tracker from the training images (once). Missing weights are reported once
        as a warning and FID is switched off, unless ``require`` is set.

        Raises:
            MedgenError: the weights are missing and ``require`` is set.
        """
        if self.tracker is not None:
            return True
        if self.unavailable is not None:
            return False
        try:
            from medgen_cli.metrics.fid import FIDTracker

            self.tracker = FIDTracker(real_images(), device=device, weights=self.cfg.weights, compute_kid=True)
            return True
        except MedgenError as exc:  # FIDWeightsMissing and friends: a user-fixable setup problem
            if self.require:
                # `medgen train` has no --weights flag (eval fid's hint names it): say what train takes.
                raise MedgenError(f"--require-fid: FID is not available: {exc.message}",
                                  "give the weights with --set fid.weights=FILE or MEDGEN_FID_WEIGHTS=FILE "
                                  "(bash scripts/run.sh setup installs them), or drop --require-fid") from exc
            self.unavailable = exc.message
            warnings.warn(f"training continues without FID/KID (best.pt is not written): {exc.message}",
                          RuntimeWarning, stacklevel=2)
            return False

    def evaluate(self, fake_images: torch.Tensor, step: int) -> dict[str, float]:
        """FID/KID of ``fake_images`` ([N, C, H, W] in [0, 1]) as ``val/fid``, ``val/kid``."""
        out = self.tracker(fake_images)
        self.last_step = step
        return {f"val/{k}": float(v) for k, v in out.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": -1 if self.last_step is None else int(self.last_step)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        last = int(state.get("last_step", -1))
        self.last_step = None if last < 0 else last
