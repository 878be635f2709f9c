"""What a family sees of the trainer during a step: devices, precision, updates, logging, and
the services only the engine has (loading another run).

Families never call ``loss.backward()`` or ``optimizer.step()`` themselves; they call
``ctx.backward`` and ``ctx.step`` so that AMP loss scaling, gradient clipping and distributed
training are handled in one place. A family never imports the engine: what it needs of it
arrives through the context (:class:`RunLoader`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

import torch

if TYPE_CHECKING:
    from torch.optim.swa_utils import AveragedModel


@dataclass
class InferenceContext:
    """Context for sampling/interpolation/reconstruction from a trained run.

    Attributes:
        device: where the modules live.
        run_dir: the run directory (``None`` for in-memory use).
        modules: the modules to use for inference (EMA weights when the run kept EMA).
        progress: wraps long loops in a progress bar (``None``: silent).
    """

    device: torch.device
    run_dir: Path | None
    modules: dict[str, torch.nn.Module]
    progress: Callable[[Iterator[Any], int, str], Iterator[Any]] | None = None

    def eval_module(self, name: str) -> torch.nn.Module:
        return self.modules[name]

    def track(self, it: Iterator[Any], total: int, description: str) -> Iterator[Any]:
        """Wrap ``it`` in a progress bar when a console is attached."""
        if self.progress is None:
            return it
        return self.progress(it, total, description)


class LoadedRunView(Protocol):
    """What a family reads of another run the engine loaded (a built family with its weights)."""

    @property
    def family(self) -> Any:
        """The run's :class:`~medgen_cli.contract.family.Family`, built, weights loaded."""

    @property
    def ctx(self) -> InferenceContext:
        """Its inference context (``eval_module`` gives the EMA weights when the run kept them)."""


class RunLoader(Protocol):
    """The engine's service that rebuilds a trained run (e.g. diffusion's autoencoder run)."""

    def __call__(self, run_dir: str | Path, checkpoint: str = "best", device: str = "auto") -> LoadedRunView:
        """Rebuild the family of ``run_dir`` with a checkpoint's weights.

        Raises:
            MedgenError: not a run directory, no checkpoint, or a checkpoint that does not fit.
        """
        ...


def _average_grads(optimizer: torch.optim.Optimizer) -> None:
    """Average the gradients of ``optimizer``'s parameters over the ranks (one all-reduce; a
    parameter without a gradient counts as zero, so every rank sends the same layout)."""
    import torch.distributed as dist

    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p)  # disjoint views of a fresh buffer
        offset += n


@dataclass
class TrainContext:
    """Per-run state handed to :meth:`Family.train_step` and :meth:`Family.validate`.

    ``global_step`` counts completed optimizer steps (the number shown in logs/checkpoints);
    ``step(opt)`` performs an optimizer update.
    """

    device: torch.device
    modules: dict[str, torch.nn.Module]
    wrapped: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    ema: dict[str, AveragedModel]
    scalers: dict[str, torch.amp.GradScaler]
    amp_dtype: torch.dtype | None
    grad_clip: float | None
    rank: int = 0
    world_size: int = 1
    global_step: int = 0
    epoch: int = 0
    run_dir: Path | None = None
    writer: Any = None
    #: Optimizers stepped during the current train_step; their LR schedulers advance after it.
    stepped: set[str] = field(default_factory=set)
    #: Optimizers whose gradients were not finite in the current train_step (without fp16 loss
    #: scaling, where that is routine); the trainer stops the run on them.
    bad_grads: list[str] = field(default_factory=list)
    #: True when a checkpoint will be restored after ``Family.prepare`` (its values win), so
    #: ``prepare`` can skip work whose result the checkpoint holds (and inputs that may be gone).
    resuming: bool = False
    #: Loads another run (the engine passes its loader in; ``None`` where no engine runs).
    load_run: RunLoader | None = None
    #: Optimizers whose modules are not DDP-wrapped (``Family.ddp_unused_parameters``): their
    #: gradients are averaged over the ranks here, in :meth:`step`, whatever the forward passes were.
    grad_average: frozenset[str] = frozenset()

    @property
    def is_main(self) -> bool:
        """True on rank 0: the only process that writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # ---- forward ------------------------------------------------------------------------
    def net(self, name: str) -> torch.nn.Module:
        """The module to use for a *training* forward pass (DDP-wrapped when distributed)."""
        return self.wrapped[name]

    def eval_module(self, name: str) -> torch.nn.Module:
        """The module for validation/sampling: its EMA copy when EMA is on, else the online one."""
        avg = self.ema.get(name)
        return avg.module if avg is not None else self.modules[name]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed-precision context for forward passes (a no-op when AMP is off)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ---- updates ------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor, opt: str, retain_graph: bool = False) -> None:
        """Backpropagate ``loss`` for optimizer ``opt`` (scaled when fp16 AMP is on)."""
        scaler = self.scalers.get(opt)
        if scaler is not None:
            loss = scaler.scale(loss)
        loss.backward(retain_graph=retain_graph)

    def step(self, opt: str) -> float:
        """Unscale, clip, step and zero the gradients of optimizer ``opt``.

        Returns:
            The gradient norm before clipping (``nan`` when no parameter had a gradient).
        """
        optimizer = self.optimizers[opt]
        if opt in self.grad_average and self.world_size > 1:
            _average_grads(optimizer)
        scaler = self.scalers.get(opt)
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if params:
            if self.grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            else:
                # The foreach implementation: one fused pass, ~3x cheaper than a Python loop of norms.
                norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            grad_norm = float(norm)
            if scaler is None and not math.isfinite(grad_norm):
                self.bad_grads.append(opt)
        else:
            grad_norm = float("nan")
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.stepped.add(opt)
        return grad_norm

    def zero_grad(self, opt: str) -> None:
        self.optimizers[opt].zero_grad(set_to_none=True)

    # ---- logging ------------------------------------------------------------------------
    def add_image(self, tag: str, image: torch.Tensor) -> None:
        """Log an image (``[C, H, W]`` in [0, 1]) to TensorBoard on rank 0."""
        if not self.is_main:
            return
        if self.writer is not None:
            self.writer.add_image(tag, image.detach().float().clamp(0, 1).cpu(), self.global_step)

    def add_scalar(self, tag: str, value: float) -> None:
        """Log one extra scalar to TensorBoard on rank 0 (regular metrics come from train_step)."""
        if self.is_main and self.writer is not None:
            self.writer.add_scalar(tag, value, self.global_step)
