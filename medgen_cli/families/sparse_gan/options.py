"""What ``medgen sample`` / ``interpolate`` accept for a sparse-gan run. Pure pydantic: imports
without torch."""

from __future__ import annotations

from medgen_cli.contract.options import FamilyOptions, VolumeInterpolateOptions, VolumeSampleOptions


class SparseGANSampleOptions(VolumeSampleOptions):
    """``medgen sample`` on a sparse-gan run: NIfTI (default), npy, png or points."""


class SparseGANInterpolateOptions(VolumeInterpolateOptions):
    """``medgen interpolate`` on a sparse-gan run: slerp (default) or lerp in latent space."""


OPTIONS = FamilyOptions(sample=SparseGANSampleOptions, interpolate=SparseGANInterpolateOptions)
