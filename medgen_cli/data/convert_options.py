"""What ``medgen data convert-h5`` is asked (:class:`ConvertOptions`) and what it did
(:class:`ConvertSummary`), shared by the converter, its workers and its report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medgen_cli.data.voxelize import METHODS, NORMALIZATIONS
from medgen_cli.errors import MedgenError

_RESUME_FREE = ("workers", "resume", "overwrite", "chunk")  # options that may change on --resume


@dataclass
class ConvertOptions:
    """Everything ``convert-h5`` needs (the CLI flags, validated by :meth:`check`)."""

    inputs: list[str]
    out: str
    key: str | None = None
    label_key: str | None = None
    resolution: tuple[int, int, int] = (64, 64, 64)
    method: str = "occupancy"
    sigma: float = 1.0
    weights: bool = False
    normalize: str = "sample"
    margin: float = 0.05
    bounds: list[list[float]] | None = None
    spacing: tuple[float, float, float] | None = None
    val_fraction: float = 0.1
    seed: int = 0
    strict: bool = False
    workers: int = 1
    resume: bool = False
    overwrite: bool = False
    chunk: int = 16

    def check(self) -> None:
        """Raise :class:`MedgenError` on an invalid combination of options."""
        if self.method not in METHODS:
            raise MedgenError(f"unknown --method {self.method!r}", f"use one of {', '.join(METHODS)}")
        if self.normalize not in NORMALIZATIONS:
            raise MedgenError(f"unknown --normalize {self.normalize!r}", f"use one of {', '.join(NORMALIZATIONS)}")
        if not self.sigma > 0:
            raise MedgenError(f"--sigma must be positive, not {self.sigma}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise MedgenError(f"--val-fraction must be in [0, 1), not {self.val_fraction}")
        if not 0.0 <= self.margin < 0.5:
            raise MedgenError(f"--margin must be in [0, 0.5), not {self.margin}")
        if self.resume and self.overwrite:
            raise MedgenError("--resume and --overwrite exclude each other")
        if self.workers < 0 or self.chunk < 1:
            raise MedgenError("--workers must be >= 0 and the chunk size >= 1")
        if not self.inputs:
            raise MedgenError("no input files")

    def mode(self) -> str:
        """The effective normalization: ``bounds`` when explicit bounds are given."""
        return "bounds" if self.bounds is not None else self.normalize

    def signature(self) -> dict[str, Any]:
        """The options that define the output (compared on ``--resume``)."""
        d = asdict(self)
        for k in _RESUME_FREE:
            d.pop(k)
        d["inputs"] = [str(Path(p).resolve()) for p in self.inputs]
        d["out"] = str(Path(self.out).resolve())
        return json.loads(json.dumps(d))


@dataclass
class SourceStats:
    """Counts for one input file (one row of the summary table)."""

    source: str
    layout: str
    clouds: int
    train: int = 0
    val: int = 0
    resumed: int = 0
    empty: int = 0
    degenerate: int = 0
    outside_all: int = 0
    nonfinite_points: int = 0
    outside_points: int = 0
    points: int = 0

    def add(self, other: dict[str, int]) -> None:
        """Add a worker's counts."""
        for k, v in other.items():
            setattr(self, k, getattr(self, k) + v)


@dataclass
class ConvertSummary:
    """What a conversion did."""

    out: Path
    sources: list[SourceStats]
    seconds: float
    records: int
    skipped_samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def written(self) -> int:
        """Volumes written by this run."""
        return sum(s.train + s.val for s in self.sources)

    @property
    def points(self) -> int:
        """Points voxelized by this run."""
        return sum(s.points for s in self.sources)
