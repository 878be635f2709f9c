"""Sparse 3D GAN (MinkowskiEngine or pure-PyTorch sparse convolutions), registered as ``sparse-gan``."""

from __future__ import annotations

from medgen_cli.contract.registry import FamilySpec, register

register(FamilySpec(
    name="sparse-gan",
    config="medgen_cli.families.sparse_gan.config:SparseGANConfig",
    family="medgen_cli.families.sparse_gan.family:SparseGANFamily",
    help="Sparse 3D GAN (WGAN-GP/vanilla/LSGAN) whose generator keeps a voxel budget.",
    options="medgen_cli.families.sparse_gan.options:OPTIONS",
))
