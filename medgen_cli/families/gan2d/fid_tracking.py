"""FID-tracked validation for the 2D GANs: a schedule (frequent early, sparser later) and a lazy
:class:`~medgen_cli.metrics.fid.FIDTracker` that tolerates missing Inception weights.

The in-training value equals ``medgen eval fid DATA SAMPLES`` where ``SAMPLES`` is what
``medgen sample RUN --num fid.num_fake --seed fid.seed`` writes from the same weights: the
reference is ``data.root`` read exactly as ``eval fid`` reads a folder (and its statistics come
from, and go to, the same cache), the fakes come from the same per-image seeds and are quantised
to 8 bits as the PNG writer stores them, and both use the same weights and matrix square root.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import torch

from medgen_cli.errors import MedgenError
from medgen_cli.families.gan2d.config import FIDConfig


def fid_every(schedule: list[tuple[int, int]], step: int) -> int:
    """The evaluation interval at ``step``: the ``every`` of the first ``(until, every)`` pair
    with ``step <= until``; the last pair's ``every`` continues after its ``until``."""
    for until, every in schedule:
        if step <= until:
            return int(every)
    return int(schedule[-1][1])


def as_png_values(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] rounded to the 8-bit values a PNG stores (the writer's
    ``floor(x·255 + 0.5)``), as pytorch-fid reads them back (``/255``)."""
    return torch.floor(images.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0


def readable_folder(root: str | Path | None) -> Path | None:
    """``root`` when ``medgen eval fid`` can read it as a folder of images (not nested), else None."""
    from medgen_cli.metrics.fid.inputs import list_images

    if root is None or not Path(root).is_dir() or not list_images(Path(root)):
        return None
    return Path(root)


def warn_once(message: str) -> None:
    """One yellow ``warning:`` line on stderr (not a Python ``RuntimeWarning`` with file/line)."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[yellow]warning:[/] {message}", markup=True)
    sys.stderr.flush()


class FIDState:
    """When FID is due, whether it is available, and the tracker once built.

    Args:
        cfg: the family's :class:`~medgen_cli.families.gan2d.config.FIDConfig`.
        require: raise instead of continuing when the weights are missing (``--require-fid``).
    """

    def __init__(self, cfg: FIDConfig, require: bool = False) -> None:
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

    def build(self, real_images: Callable[[], torch.Tensor], device: torch.device,
              root: str | Path | None = None) -> bool:
        """Create the tracker once: reference features of the folder ``root`` (as ``eval fid``,
        cached), else of ``real_images()``. Missing weights are reported once as a one-line
        warning and FID is switched off, unless ``require`` is set.

        Raises:
            MedgenError: the weights are missing and ``require`` is set.
        """
        if self.tracker is not None:
            return True
        if self.unavailable is not None:
            return False
        try:
            from medgen_cli.metrics.fid import FIDTracker

            folder = readable_folder(root)
            images = None if folder is not None else real_images()
            self.tracker = FIDTracker(images, device=device, weights=self.cfg.weights, compute_kid=True,
                                      real_folder=folder)
            return True
        except MedgenError as exc:  # FIDWeightsMissing and friends: a user-fixable setup problem
            if self.require:
                # `medgen train` has no --weights flag (eval fid's hint names it): say what train takes.
                raise MedgenError(f"--require-fid: FID is not available: {exc.message}",
                                  "give the weights with --set fid.weights=FILE or MEDGEN_FID_WEIGHTS=FILE "
                                  "(bash scripts/run.sh setup installs them), or drop --require-fid") from exc
            self.unavailable = exc.message
            warn_once(f"training continues without FID/KID (best.pt is not written): {exc}")
            return False

    def evaluate(self, fake_images: torch.Tensor, step: int) -> dict[str, float]:
        """FID/KID of ``fake_images`` ([N, C, H, W] in [0, 1], stored as 8-bit values first) as
        ``val/fid``, ``val/kid``, with ``val/precision``, ``val/recall``, ``val/density`` and
        ``val/coverage`` (a model that draws one mode of the data covers only that mode's share)."""
        out = self.tracker(as_png_values(fake_images))
        self.last_step = step
        return {f"val/{k}": float(v) for k, v in out.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": -1 if self.last_step is None else int(self.last_step)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        last = int(state.get("last_step", -1))
        self.last_step = None if last < 0 else last
