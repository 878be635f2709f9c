"""DIF-Gaussian: sparse-view CBCT reconstruction with 3D Gaussian features (MICCAI 2024)."""

from medgen_cli.contract.registry import FamilySpec, register

register(FamilySpec(
    name="dif-gaussian",
    config="medgen_cli.families.dif_gaussian.config:DIFGaussianConfig",
    family="medgen_cli.families.dif_gaussian.family:DIFGaussianFamily",
    help="Sparse-view cone-beam CT reconstruction from 6-10 projections (DIF-Gaussian).",
    options="medgen_cli.families.dif_gaussian.options:OPTIONS",
))
