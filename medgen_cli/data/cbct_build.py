"""``medgen data make-cbct`` as a library call: pick the geometry and the sources (a NIfTI folder
or synthetic phantoms), the poses and the split, then :func:`medgen_cli.data.cbct.make_cbct`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from medgen_cli.errors import MedgenError


def build_cbct_dataset(out: Path, volumes_dir: Path | None = None, synthetic: int = 0, geometry: Path | None = None,
                       size: int | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                       allow_truncation: bool = False, overwrite: bool = False, poses: int = 0,
                       pose_rotation: float = 15.0, pose_scale: str = "0.9,1.1", pose_shift: float = 0.05,
                       pose_flip: str = "x",
                       track: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None) -> dict[str, Any]:
    """Simulated cone-beam case files for the CT volumes of ``volumes_dir`` (or ``synthetic`` phantoms).

    Returns:
        :func:`~medgen_cli.data.cbct.make_cbct`'s summary plus ``counts`` per split, ``volume_size``
        and ``num_angles`` of the geometry used.

    Raises:
        MedgenError: both or neither of ``volumes_dir`` / ``synthetic``, a bad geometry or pose spec.
    """
    from medgen_cli.data import cbct
    from medgen_cli.data.cbct_pose import PoseSpec, parse_scale_range
    from medgen_cli.data.geometry import load_geometry

    geo = load_geometry(str(geometry) if geometry else None)
    if size is not None:
        geo = geo.scaled(size)
    if (volumes_dir is None) == (synthetic <= 0):
        raise MedgenError("give either VOLUMES_DIR or --synthetic N",
                          "e.g. medgen data make-cbct --synthetic 20 --out data/cbct --size 32")
    sources = cbct.synthetic_sources(synthetic, geo, seed) if synthetic > 0 else cbct.nifti_sources(volumes_dir)
    spec = PoseSpec(poses, pose_rotation, parse_scale_range(pose_scale), pose_shift,
                    "" if pose_flip == "none" else pose_flip)
    summary = cbct.make_cbct(sources, out, geo, (1 - val_fraction - test_fraction, val_fraction, test_fraction),
                             seed=seed, overwrite=overwrite, allow_truncation=allow_truncation,
                             is_hu_grid=synthetic > 0, track=track, poses=spec)
    counts = {s: sum(1 for v in summary["split"].values() if v == s) for s in cbct.SPLITS}
    return {**summary, "counts": counts, "volume_size": geo.volume_size, "num_angles": geo.num_angles}
