"""Choosing a sparse backend: ``auto`` (MinkowskiEngine when it imports), ``minkowski`` or ``torch``."""

from __future__ import annotations

import functools
from typing import Any

from medgen_cli.errors import MedgenError

BACKENDS = ("auto", "minkowski", "torch")


@functools.lru_cache(maxsize=1)
def minkowski_status() -> tuple[bool, str]:
    """Whether MinkowskiEngine imports here, and why not (for skip reasons and errors)."""
    try:
        from medgen_cli.sparse.minkowski_backend import import_minkowski

        me = import_minkowski()
    except Exception as exc:  # ImportError, or OSError/undefined symbol for a wheel built for another torch
        first = str(exc).splitlines()[0] if str(exc) else ""
        return False, f"MinkowskiEngine is not importable ({type(exc).__name__}: {first})"
    return True, f"MinkowskiEngine {getattr(me, '__version__', '?')}"


def minkowski_available() -> bool:
    """True when MinkowskiEngine imports in this environment."""
    return minkowski_status()[0]


def _minkowski_cuda() -> bool:
    from medgen_cli.sparse.minkowski_backend import import_minkowski

    me = import_minkowski()
    fn = getattr(me, "is_cuda_available", None)
    return bool(fn()) if callable(fn) else False


def resolve_backend_name(name: str = "auto", device: Any = "cpu") -> str:
    """The concrete backend for ``name`` on ``device``.

    ``auto`` picks MinkowskiEngine when it imports and can run on ``device`` (the script
    builds a CPU-only MinkowskiEngine), else the pure-PyTorch backend.

    Raises:
        MedgenError: unknown name, or ``minkowski`` requested but not usable.
    """
    if name not in BACKENDS:
        raise MedgenError(f"unknown sparse backend {name!r}", f"choose one of {', '.join(BACKENDS)}")
    if name == "torch":
        return "torch"
    ok, why = minkowski_status()
    on_cuda = str(device).startswith("cuda")
    if name == "auto":
        return "minkowski" if ok and (not on_cuda or _minkowski_cuda()) else "torch"
    if not ok:
        raise MedgenError(why, "build it with scripts/build_minkowski.sh, or set sparse.backend=torch")
    if on_cuda and not _minkowski_cuda():
        raise MedgenError("this MinkowskiEngine build has no CUDA support",
                          "use --set trainer.device=cpu, or set sparse.backend=torch")
    return "minkowski"


def get_backend(name: str = "auto", device: Any = "cpu") -> Any:
    """A backend object: module classes ``Conv``, ``GenerativeUp``, ``Linear``, ``BatchNorm``,
    ``Activation`` and functions ``prepare``, ``prune``, ``global_pool``, ``union``,
    ``to_dense``, ``from_dense`` (see :mod:`medgen_cli.sparse`)."""
    if resolve_backend_name(name, device) == "minkowski":
        from medgen_cli.sparse.minkowski_backend import MinkowskiBackend

        return MinkowskiBackend()
    from medgen_cli.sparse.torch_backend import TorchBackend

    return TorchBackend()
