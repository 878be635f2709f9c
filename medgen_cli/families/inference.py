"""The inference contract moved to :mod:`medgen_cli.contract.options` (options models) and
:mod:`medgen_cli.contract.samples` (:class:`Samples`); kept importable here."""

from __future__ import annotations

from medgen_cli.contract.options import (
    FORMAT_SUFFIXES,
    IMAGE_FORMATS,
    VOLUME_FORMATS,
    InferenceOptions,
    InterpolateOptions,
    PointsThreshold,
    ReconOptions,
    SampleOptions,
    VolumeInterpolateOptions,
    VolumeSampleOptions,
    parse_options,
    run_family,
)
from medgen_cli.contract.samples import Samples, frame_samples, seeded_samples

__all__ = [
    "FORMAT_SUFFIXES", "IMAGE_FORMATS", "VOLUME_FORMATS", "InferenceOptions", "InterpolateOptions",
    "PointsThreshold", "ReconOptions", "SampleOptions", "Samples", "VolumeInterpolateOptions",
    "VolumeSampleOptions", "frame_samples", "parse_options", "run_family", "seeded_samples",
]
