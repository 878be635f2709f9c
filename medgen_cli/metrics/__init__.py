"""Metrics: FID/KID (:mod:`medgen_cli.metrics.fid`), reconstruction and shape metrics.

Submodules import torch lazily, so importing this package stays light.
"""
