"""Pieces shared by the 2D GAN families (``sagan``, ``stylegan2``): limited-data augmentation
(DiffAugment, ADA), losses, FID-tracked validation, and sample/interpolation outputs.

Only :mod:`medgen_cli.families.gan2d.config` is imported by the family configs; it is pure
pydantic so ``medgen --help`` never imports torch.
"""
