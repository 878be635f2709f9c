"""Device resolution: the one place where a device string becomes a ``torch.device``.

Every entry point uses it: the trainer (``trainer.device``), ``medgen sample/interpolate/recon
--device``, ``medgen eval fid --device``, the Python API and the FID tracker. A device a user
cannot have (a typo like ``gpu``, ``cuda`` on a machine without CUDA) is one
:class:`~medgen_cli.errors.MedgenError` line, never a PyTorch traceback.

Accepted: ``auto`` (this process's GPU when CUDA is available, else the CPU), ``cpu``, ``cuda``,
``cuda:N`` and ``mps``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from medgen_cli.errors import MedgenError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
_SPEC = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device_spec(spec: str, setting: str = "--device") -> str:
    """Check the spelling of a device string without importing torch (config validation uses it).

    Args:
        spec: the device string.
        setting: where the user wrote it (``--device``, ``trainer.device``), named in the message.

    Returns:
        ``spec`` stripped and lower-cased.

    Raises:
        MedgenError: not one of :data:`DEVICE_CHOICES`.
    """
    text = str(spec).strip().lower()
    if not _SPEC.fullmatch(text):
        raise MedgenError(f"unknown device {spec!r} ({setting})", f"use {DEVICE_CHOICES}")
    return text


def _fix_hint(setting: str) -> str:
    if setting.startswith("--"):
        return f"use {setting} cpu (or auto)"
    return f"use --set {setting}=cpu (or auto)"


def resolve_device(spec: str | Any = "auto", local_rank: int = 0, setting: str = "--device") -> torch.device:
    """A ``torch.device`` the caller can use right now.

    Args:
        spec: a device string (see the module docstring) or a ``torch.device``.
        local_rank: this process's rank on its node; ``auto`` and a bare ``cuda`` pick its GPU.
        setting: where the user wrote ``spec`` (named in error messages).

    Returns:
        The device (``cuda`` always with an index).

    Raises:
        MedgenError: an unknown device, or one this machine does not have.
    """
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    text = check_device_spec(spec, setting)
    if text == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(text)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MedgenError(f"device {spec!r} ({setting}) requested but CUDA is not available", _fix_hint(setting))
        index = local_rank if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise MedgenError(f"device {spec!r} ({setting}): this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s)", f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
        return torch.device(f"cuda:{index}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise MedgenError(f"device {spec!r} ({setting}) requested but MPS is not available", _fix_hint(setting))
    return dev
