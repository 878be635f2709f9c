"""Runtime helpers of the trainer: precision, seeding, RNG preservation, signals."""

from __future__ import annotations

import contextlib
import random
import signal
from typing import Any, Iterator

import numpy as np
import torch

from medgen_cli.errors import MedgenError


def cpu_has_native_bf16() -> bool:
    """Whether this CPU executes bf16 arithmetic in hardware (AVX512_BF16 or AMX). Elsewhere
    oneDNN emulates bf16 with fp32 instructions, which is slower than fp32 itself."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_amp(mode: str, device: torch.device, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype of ``trainer.amp`` on ``device`` (``None``: fp32).

    ``auto`` is bf16 (fp16 where bf16 is missing) on CUDA; on a CPU it is bf16 only where the family
    measured bf16 training to match fp32 (``cpu_bf16``, the family's ``cpu_autocast``) and the CPU
    has native bf16 instructions, else off.
    """
    if mode == "off":
        return None
    if mode == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_bf16 and cpu_has_native_bf16() else None
    if mode == "fp16" and device.type != "cuda":
        raise MedgenError("trainer.amp=fp16 needs a CUDA device", "use trainer.amp=bf16 or off on CPU")
    return torch.bfloat16 if mode == "bf16" else torch.float16


def amp_notes(amp_dtype: torch.dtype | None, device: torch.device) -> list[str]:
    """What a user should know about the precision a run trains in (logged at its start)."""
    if amp_dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        return ["trainer.amp=bf16 on a CPU without native bf16 (AVX512_BF16/AMX): oneDNN emulates it, "
                "usually slower than fp32; trainer.amp=auto picks fp32 here"]
    return []


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def move_to(batch: Any, device: torch.device) -> Any:
    """Move tensors in (nested) batches to ``device``; other values pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step; ``signum`` remembers
    which signal asked, so the process can exit with the conventional ``128 + signum``."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second signal stops immediately
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.requested = True
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block (validation, image logging) without shifting the training RNG streams, so a
    resumed run (which may validate at different steps) continues bit-identically."""
    state = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.random.set_rng_state(state[0])
        np.random.set_state(state[1])
        random.setstate(state[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def limited(it: Iterator[Any], limit: int | None) -> Iterator[Any]:
    for i, item in enumerate(it):
        if limit is not None and i >= limit:
            return
        yield item


@torch.no_grad()
def copy_into(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    for a, b in zip(dst.state_dict().values(), src.state_dict().values()):
        a.copy_(b)


@torch.no_grad()
def to_channels_last(module: torch.nn.Module) -> None:
    """Store ``module``'s 4-D parameters and buffers channels-last, in place (the same Parameter
    objects, so optimizers built on them stay valid). Convolutions then run oneDNN's NHWC kernels
    and hand channels-last activations on; 5-D tensors (a modulated conv's per-sample weights) and
    everything else keep their layout. ``Module.to(memory_format=...)`` cannot: it refuses 5-D."""
    for t in (*module.parameters(), *module.buffers()):
        if t.dim() == 4:
            t.data = t.data.contiguous(memory_format=torch.channels_last)
