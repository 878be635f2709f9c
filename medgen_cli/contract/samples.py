"""What a family's ``sample`` / ``interpolate`` / ``recon`` returns: arrays plus metadata.

Writing files is shared code (:mod:`medgen_cli.engine.outputs`); a family never writes its samples.
Seeds: sample ``i`` of a request with ``seed=s`` is generated from seed ``s + i`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np


@dataclass
class Samples:
    """What a family's ``sample`` / ``interpolate`` / ``recon`` returns.

    Attributes:
        arrays: ``[N, C, *spatial]`` float32 (``C`` = 1 for volumes and grey images).
        names: file stem per item (``sample_00003``, ``frame_002``, ``recon_case``).
        seeds: seed per item (``None`` for interpolation frames and reconstructions).
        labels: class label per item (conditional models), else ``None``.
        affine: 4x4 voxel-to-world matrix of the outputs (identity for 2D images).
        preview: which preview the writers make: ``grid`` (samples), ``strip`` (frames) or
            ``compare`` (inputs next to reconstructions).
        value_range: the known value range of the arrays (``(0, 1)`` for GAN images); ``None``
            when not fixed (previews then scale each item by its own min..max).
        references: ``[N, C, *spatial]`` inputs shown next to ``arrays`` in a ``compare`` preview.
        extra: more manifest fields per item (e.g. ``{"t": 0.5}`` for a frame).
    """

    arrays: np.ndarray
    names: list[str]
    seeds: list[int | None]
    labels: list[int | None]
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    preview: Literal["grid", "strip", "compare"] = "grid"
    value_range: tuple[float, float] | None = None
    references: np.ndarray | None = None
    extra: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.arrays = np.asarray(self.arrays, dtype=np.float32)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        n = len(self.arrays)
        if not (len(self.names) == len(self.seeds) == len(self.labels) == n):
            raise ValueError("Samples: names, seeds and labels need one entry per array")

    @property
    def spatial_dims(self) -> int:
        """2 for images, 3 for volumes."""
        return self.arrays.ndim - 2

    @property
    def volumes(self) -> np.ndarray:
        """The arrays without the channel axis when it is 1 (``[N, *spatial]``)."""
        return self.arrays[:, 0] if self.arrays.shape[1] == 1 else self.arrays

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """``np.asarray(samples)`` is :attr:`volumes` (numpy interop for the Python API)."""
        return self.volumes if dtype is None else self.volumes.astype(dtype)

    def manifest(self) -> list[dict[str, Any]]:
        """``[{"file": None, "seed": ..., "label": ..., **extra}]`` (files are set by the writer)."""
        extra = self.extra or [{} for _ in self.names]
        return [{"file": None, "seed": s, "label": lab, **e} for s, lab, e in zip(self.seeds, self.labels, extra)]


def seeded_samples(arrays: np.ndarray, seed: int, labels: Sequence[int | None] | None = None,
                   affine: Any = None, value_range: tuple[float, float] | None = None) -> Samples:
    """:class:`Samples` for ``len(arrays)`` samples from seeds ``seed, seed + 1, ...``."""
    n = len(arrays)
    seeds = list(range(seed, seed + n))
    return Samples(arrays=arrays, names=[f"sample_{s:05d}" for s in seeds], seeds=list(seeds),
                   labels=list(labels) if labels is not None else [None] * n,
                   affine=np.eye(4) if affine is None else affine, value_range=value_range)


def frame_samples(frames: np.ndarray, affine: Any = None, value_range: tuple[float, float] | None = None) -> Samples:
    """:class:`Samples` for interpolation frames (``t`` from 0 to 1 in the manifest)."""
    k = len(frames)
    return Samples(arrays=frames, names=[f"frame_{i:03d}" for i in range(k)], seeds=[None] * k, labels=[None] * k,
                   affine=np.eye(4) if affine is None else affine, preview="strip", value_range=value_range,
                   extra=[{"t": i / (k - 1) if k > 1 else 0.0} for i in range(k)])
