"""The errors FID raises that a user can cause (each a :class:`~medgen_cli.errors.MedgenError`)."""

from __future__ import annotations

from medgen_cli.errors import MedgenError


class FIDWeightsMissing(MedgenError):
    """No usable FID-Inception weights (the message says how to get them)."""


class FIDWeightsMismatch(MedgenError):
    """A weights file loads but its features are not FID-Inception's."""


class FIDNumericalError(MedgenError, ValueError):
    """``sqrtm(Σ1 Σ2)`` has a significant imaginary part (pytorch-fid raises ValueError here)."""
