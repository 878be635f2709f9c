"""Circular cone-beam geometry, written to match diffct's projector exactly.

Conventions (read from diffct 2.5 ``circular_trajectory_3d`` and its PyTorch backend, and checked
by ``tests/data/test_geometry.py`` against diffct's own projections):

* Volumes are tensors ``(D, H, W) = (z, y, x)``; world axes are ``(x, y, z)`` in mm with the
  volume centred on the origin. Voxel ``i`` of an axis with ``n`` voxels of pitch ``s`` has its
  centre at ``(i + 0.5 - n / 2) * s``.
* View angle ``θ`` (radians): source at ``(-DSO sin θ, DSO cos θ, 0)``, detector centre at
  ``((DSD - DSO) sin θ, -(DSD - DSO) cos θ, 0)``, detector axes ``u = (cos θ, sin θ, 0)`` and
  ``v = (0, 0, 1)``. The rotation axis is z.
* Projections are ``(views, U, V)``; detector pixel ``(iu, iv)`` has its centre at
  ``u = (iu + 0.5 - nu / 2) * du`` and ``v = (iv + 0.5 - nv / 2) * dv``.

A world point ``p`` therefore lands on the detector at ``u = (p·û) DSD / t`` and
``v = z DSD / t`` with depth ``t = x sin θ - y cos θ + DSO`` (distance from the source along the
central ray). Models work in normalised volume coordinates ``[-1, 1]³`` ordered ``(x, y, z)``
(``p_mm = p_norm * extent / 2``) and sample features with ``grid_sample(align_corners=False)``,
whose normalised coordinate of a detector position is ``2 u / (nu du)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field

from medgen_cli.contract.config import StrictModel
from medgen_cli.errors import MedgenError

if TYPE_CHECKING:
    import numpy as np
    import torch

#: LUNA16 reference geometry (DIF-Gaussian): 256³ at 1.6 mm, detector 256² at 2.4 mm.
LUNA16 = {"dso": 800.0, "dsd": 1200.0, "volume_size": 256, "voxel_spacing": 1.6,
          "detector_size": 256, "detector_spacing": 2.4, "num_angles": 50, "angle_range": 180.0}


class CBCTGeometry(StrictModel):
    """A circular cone-beam scan of a cubic volume (defaults: LUNA16 / DIF-Gaussian)."""

    dso: float = Field(800.0, gt=0, description="Source-to-isocentre (rotation axis) distance in mm.")
    dsd: float = Field(1200.0, gt=0, description="Source-to-detector distance in mm.")
    volume_size: int = Field(256, ge=2, description="Voxels per side of the cubic volume grid.")
    voxel_spacing: float = Field(1.6, gt=0, description="Voxel pitch in mm.")
    detector_size: int = Field(256, ge=2, description="Detector pixels per side (square detector).")
    detector_spacing: float = Field(2.4, gt=0, description="Detector pixel pitch in mm.")
    num_angles: int = Field(50, ge=1, description="Projections stored per case.")
    angle_range: float = Field(180.0, gt=0, le=360.0, description="Angular span in degrees, [0, range).")
    start_angle: float = Field(0.0, description="First angle in degrees.")

    # ---- derived quantities ------------------------------------------------------------------
    @property
    def extent(self) -> float:
        """Edge length of the volume in mm."""
        return self.volume_size * self.voxel_spacing

    @property
    def detector_extent(self) -> float:
        """Edge length of the detector in mm."""
        return self.detector_size * self.detector_spacing

    def scaled(self, volume_size: int, detector_size: int | None = None) -> CBCTGeometry:
        """The same physical scan on a coarser grid: field of view and distances are kept.

        Args:
            volume_size: new voxels per side (spacing grows so the extent stays the same).
            detector_size: new detector pixels per side (default: ``volume_size``).
        """
        det = detector_size or volume_size
        return self.model_copy(update={
            "volume_size": volume_size, "voxel_spacing": self.extent / volume_size,
            "detector_size": det, "detector_spacing": self.detector_extent / det,
        })

    def angles(self) -> np.ndarray:
        """All stored view angles in radians (``num_angles`` evenly over ``[start, start+range)``)."""
        import numpy as np

        step = math.radians(self.angle_range) / self.num_angles
        return math.radians(self.start_angle) + step * np.arange(self.num_angles, dtype=np.float64)

    def check(self) -> None:
        """Reject geometries where the source sits inside the volume or DSD ≤ DSO."""
        if self.dsd <= self.dso:
            raise MedgenError(f"geometry: dsd ({self.dsd} mm) must be larger than dso ({self.dso} mm)")
        half_diag = self.extent / 2 * math.sqrt(2)
        if self.dso <= half_diag:
            raise MedgenError(
                f"geometry: the source orbit (dso {self.dso} mm) passes through the volume "
                f"(half-diagonal {half_diag:.1f} mm)", "increase dso or reduce volume_size x voxel_spacing")

    # ---- H5 attributes ----------------------------------------------------------------------
    def to_attrs(self) -> dict[str, Any]:
        """Plain attributes for an H5 file (prefixed ``geometry_``)."""
        return {f"geometry_{k}": v for k, v in self.model_dump().items()}

    @classmethod
    def from_attrs(cls, attrs: Any, source: str = "case file") -> CBCTGeometry:
        """Rebuild from :meth:`to_attrs` output; a one-line error when the file has none."""
        keys = [k for k in attrs.keys() if str(k).startswith("geometry_")]
        if not keys:
            raise MedgenError(f"{source} has no CBCT geometry attributes",
                              "make case files with `medgen data make-cbct`")
        values = {k[len("geometry_"):]: attrs[k] for k in keys}
        values = {k: (v.item() if hasattr(v, "item") else v) for k, v in values.items()}
        try:
            return cls(**values)
        except Exception as exc:
            raise MedgenError(f"{source} has invalid geometry attributes: {str(exc).splitlines()[0]}") from exc

    # ---- diffct operators -------------------------------------------------------------------
    def trajectory(self, angles: Any, device: Any = "cpu") -> tuple[torch.Tensor, ...]:
        """diffct cone trajectory ``(src, det_center, det_u, det_v)`` for ``angles`` (radians)."""
        import torch
        from diffct import circular_trajectory_3d

        ang = torch.as_tensor(angles, dtype=torch.float32, device=device).reshape(-1)
        return circular_trajectory_3d(ang, sid=self.dso, sdd=self.dsd, device=device)

    def projector(self, angles: Any, device: Any = "cpu") -> Any:
        """A diffct ``Projector`` for these views: volume ``(z, y, x)`` → projections ``(views, U, V)``."""
        from diffct import Projector

        n, d = self.volume_size, self.detector_size
        return Projector(self.trajectory(angles, device), (n, n, n), (d, d),
                         detector_spacing=self.detector_spacing, voxel_spacing=self.voxel_spacing,
                         backend="torch" if str(device) == "cpu" else "auto")

    def project_volume(self, volume: torch.Tensor, angles: Any) -> torch.Tensor:
        """Line integrals (in mm × attenuation) of a ``(z, y, x)`` volume for ``angles``."""
        return self.projector(angles, volume.device).project(volume.float())

    # ---- analytic point projection ---------------------------------------------------------
    def project_points_mm(self, points: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Project world points (mm, ``(..., P, 3)`` as x, y, z) for angles ``(..., V)``.

        Returns:
            ``(u, v, depth)`` in mm, each ``(..., V, P)``; ``depth`` is the distance from the source
            along the central ray (the magnification is ``dsd / depth``).
        """
        import torch

        x, y, z = points[..., None, :, 0], points[..., None, :, 1], points[..., None, :, 2]
        s, c = torch.sin(angles)[..., :, None], torch.cos(angles)[..., :, None]
        depth = x * s - y * c + self.dso
        mag = self.dsd / depth
        return (x * c + y * s) * mag, z * mag, depth

    def project_points_normalized(self, points: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Grid for ``grid_sample`` on ``(views, U, V)`` images from normalised points.

        Args:
            points: ``(..., P, 3)`` in ``[-1, 1]`` ordered (x, y, z).
            angles: ``(..., V)`` radians.

        Returns:
            ``(..., V, P, 2)`` with the last axis ``(v_norm, u_norm)`` — grid_sample's (W, H) order
            for an image whose rows are U and columns are V, for ``align_corners=False``.
        """
        import torch

        u, v, _ = self.project_points_mm(points * (self.extent / 2), angles)
        half = self.detector_extent / 2
        return torch.stack((v / half, u / half), dim=-1)

    def point_to_pixel(self, point_mm: Any, angle: float) -> tuple[float, float]:
        """Continuous detector index ``(iu, iv)`` of one world point at one angle (for tests)."""
        x, y, z = (float(c) for c in point_mm)
        s, c = math.sin(angle), math.cos(angle)
        depth = x * s - y * c + self.dso
        mag = self.dsd / depth
        u, v = (x * c + y * s) * mag, z * mag
        return (u / self.detector_spacing + self.detector_size / 2 - 0.5,
                v / self.detector_spacing + self.detector_size / 2 - 0.5)

    def voxel_center_mm(self, iz: int, iy: int, ix: int) -> tuple[float, float, float]:
        """World (x, y, z) in mm of voxel ``[iz, iy, ix]`` of a ``(z, y, x)`` volume."""
        n, s = self.volume_size, self.voxel_spacing
        return ((ix + 0.5 - n / 2) * s, (iy + 0.5 - n / 2) * s, (iz + 0.5 - n / 2) * s)

    # ---- ray-sum re-projection --------------------------------------------------------------
    def ray_samples(self, angles: Any, stride: int = 2, samples: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample points on the rays to every ``stride``-th detector pixel, for :meth:`ray_sums`.

        Each ray is cut to the volume box and sampled at ``samples`` evenly spaced points.
        Returns ``(points, step, pixels)``: normalised ``(x, y, z)`` points ``(V, R, S, 3)``, the
        sample spacing in mm ``(V, R)``, and the detector indices used along U and V (the same
        ``R = len(pixels)²`` pixels in every view, rows U, columns V).
        """
        import torch

        ang = torch.as_tensor(angles, dtype=torch.float32).reshape(-1)
        d = self.detector_size
        pixels = torch.arange(stride // 2, d, stride)
        coord = (pixels.float() - d / 2 + 0.5) * self.detector_spacing
        u, v = (t.reshape(1, -1) for t in torch.meshgrid(coord, coord, indexing="ij"))
        s, c = torch.sin(ang)[:, None], torch.cos(ang)[:, None]
        src = torch.stack((-self.dso * s, self.dso * c, torch.zeros_like(s)), -1)            # (V, 1, 3)
        pix = torch.stack(((self.dsd - self.dso) * s + u * c, -(self.dsd - self.dso) * c + u * s,
                           v.expand(len(ang), -1)), -1)                                    # (V, R, 3)
        ray = pix - src
        half = self.extent / 2
        inv = 1.0 / torch.where(ray.abs() < 1e-9, torch.full_like(ray, 1e-9), ray)
        t0, t1 = (-half - src) * inv, (half - src) * inv                                   # slab test
        near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
        far = torch.maximum(torch.maximum(t0, t1).amin(-1).clamp_max(1.0), near)
        t = near[..., None] + (far - near)[..., None] * ((torch.arange(samples) + 0.5) / samples)
        points = (src[:, :, None, :] + t[..., None] * ray[:, :, None, :]) / half
        return points, (far - near) * ray.norm(dim=-1) / samples, pixels

    @staticmethod
    def ray_sums(volumes: torch.Tensor, points: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Line integrals ``(C, V, R)`` of ``(C, z, y, x)`` volumes along :meth:`ray_samples`' rays.

        Nearest-voxel sampling weighs each voxel by its share of the ray as diffct's exact
        path-length projector does: on a 32³ phantom within 1.6% at 128 samples per ray (0.4% at
        512; tested), where trilinear sampling stays ~4% off (it blurs edges). About 10 ms for 10
        views of a 32³ volume at every 2nd pixel and 128 samples.
        """
        import torch.nn.functional as F

        v, r, s, _ = points.shape
        out = F.grid_sample(volumes[None].float(), points.reshape(1, 1, 1, -1, 3).to(volumes.device), mode="nearest",
                            padding_mode="zeros", align_corners=False)
        return out.reshape(volumes.shape[0], v, r, s).sum(-1) * step.to(volumes.device)

    # ---- field of view ----------------------------------------------------------------------
    def check_field_of_view(self, volume_zyx: np.ndarray, threshold: float = 1e-3) -> None:
        """Raise when the object (voxels above ``threshold``) leaves the detector in some view.

        The object is bounded by a cylinder about the rotation axis (radius ``r``, half-height
        ``h`` from its voxel corners). The widest fan of that cylinder hits
        ``u = dsd r / sqrt(dso² - r²)``, its near top edge ``v = dsd h / (dso - r)``; both must stay
        within half the detector.
        """
        import numpy as np

        mask = np.asarray(volume_zyx) > threshold
        if not mask.any():
            return
        n, s = self.volume_size, self.voxel_spacing
        iz, iy, ix = np.nonzero(mask)
        # Outer voxel corners: centre distance plus half a voxel diagonal.
        cx, cy, cz = ((ix + 0.5 - n / 2) * s, (iy + 0.5 - n / 2) * s, (iz + 0.5 - n / 2) * s)
        r = float(np.sqrt(cx**2 + cy**2).max() + s / math.sqrt(2))
        h = float(np.abs(cz).max() + s / 2)
        half = self.detector_extent / 2
        if r >= self.dso:
            raise MedgenError("geometry: the object reaches the source orbit")
        u_max = self.dsd * r / math.sqrt(self.dso**2 - r**2)
        v_max = self.dsd * h / (self.dso - r)
        if u_max > half * 1.0001 or v_max > half * 1.0001:
            raise MedgenError(
                f"geometry: the object leaves the detector's field of view (needs ±{max(u_max, v_max):.1f} mm,"
                f" detector covers ±{half:.1f} mm)",
                "use a larger detector_size/detector_spacing, a larger dso, or pass --allow-truncation")


def load_geometry(path: str | None) -> CBCTGeometry:
    """Read a geometry YAML (keys of :class:`CBCTGeometry`); defaults when ``path`` is None."""
    if path is None:
        return CBCTGeometry()
    from medgen_cli.config import load_yaml

    data = load_yaml(path)
    try:
        geo = CBCTGeometry(**(data or {}))
    except Exception as exc:
        raise MedgenError(f"invalid geometry file {path}: {str(exc).splitlines()[0]}") from exc
    return geo
