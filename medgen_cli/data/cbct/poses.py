"""Random rigid-plus-scale poses of CT volumes: a few real volumes become a CBCT training set.

A pose maps a point of the source volume (mm, relative to the volume centre, NIfTI ``(x, y, z)``
axes) to the output grid: ``p_out = A p_src + t`` with ``A = R · s · F`` (rotation, isotropic scale,
axis flips) and ``t`` a shift. :func:`medgen_cli.data.cbct.resample_to_grid` samples the source at
``A⁻¹ (p_out − t)`` so the pose costs one trilinear resampling, the same as no pose.

Poses are drawn from a seed and the case name (``zlib.crc32``), so a re-run or a resume makes
exactly the same cases, and adding a volume does not change the poses of the others.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from medgen_cli.errors import MedgenError


@dataclass(frozen=True)
class PoseSpec:
    """How ``make-cbct`` poses each input volume.

    Attributes:
        copies: posed cases per input volume (0 = the volume once, unposed).
        rotation: largest rotation in degrees about each axis (uniform in ±rotation).
        scale: isotropic scale range ``(lo, hi)`` (uniform).
        shift: largest shift per axis as a fraction of the grid's edge (uniform in ±shift).
        flip: axes among ``x``, ``y``, ``z`` flipped with probability ½ each.
    """

    copies: int = 0
    rotation: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.05
    flip: str = "x"

    def check(self) -> None:
        """One-line errors for settings that cannot make a sensible pose."""
        if self.copies < 0:
            raise MedgenError(f"--poses must be ≥ 0, got {self.copies}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise MedgenError(f"--pose-scale needs 0 < LO ≤ HI, got {lo},{hi}", "e.g. --pose-scale 0.9,1.1")
        if not 0 <= self.rotation <= 180 or not 0 <= self.shift < 0.5:
            raise MedgenError("--pose-rotation must be in [0, 180] degrees and --pose-shift in [0, 0.5)")
        if set(self.flip) - set("xyz"):
            raise MedgenError(f"--pose-flip takes axes among x, y, z, got '{self.flip}'", "e.g. --pose-flip x")

    def to_dict(self) -> dict[str, object]:
        """Plain values for the manifest (a resume with other pose settings is refused)."""
        d = asdict(self)
        d["scale"] = list(self.scale)
        return d


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """``Rz · Ry · Rx`` for angles (degrees) about x, y and z."""
    ax, ay, az = (math.radians(float(a)) for a in angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def draw_pose(spec: PoseSpec, name: str, copy: int, seed: int, extent_mm: float) -> np.ndarray:
    """The 4×4 pose (mm, centred, ``(x, y, z)``) of copy ``copy`` of volume ``name``."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), copy])
    rot = rotation_matrix(rng.uniform(-spec.rotation, spec.rotation, 3))
    scale = rng.uniform(*spec.scale)
    flips = np.array([-1.0 if (a in spec.flip and rng.random() < 0.5) else 1.0 for a in "xyz"])
    pose = np.eye(4)
    pose[:3, :3] = rot @ np.diag(scale * flips)
    pose[:3, 3] = rng.uniform(-spec.shift, spec.shift, 3) * extent_mm
    return pose


def posed_names(name: str, spec: PoseSpec) -> list[str]:
    """Case names made from one input volume (``name`` itself when unposed)."""
    return [name] if spec.copies == 0 else [f"{name}_pose{k:03d}" for k in range(spec.copies)]


def parse_scale_range(text: str) -> tuple[float, float]:
    """``"0.9,1.1"`` → ``(0.9, 1.1)``; a single number means a fixed scale."""
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise MedgenError(f"--pose-scale takes LO,HI, got '{text}'", "e.g. --pose-scale 0.9,1.1")
    return (parts[0], parts[-1])
