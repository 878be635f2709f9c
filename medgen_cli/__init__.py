"""medgen: one command line for generative and reconstruction models in medical imaging."""

from __future__ import annotations

__version__ = "0.4.2"
__all__ = ["__version__"]
