"""Fréchet Radiomics Distance between two folders of NIfTI volumes (``medgen eval frd``).

FRD (Konz, Osuala et al., Medical Image Analysis 2026; REFERENCES.md) compares the
distributions of radiomic features (pyradiomics: intensity statistics, texture matrices, LoG and
wavelet filtered images) of two image sets, as FID does for Inception features; it needs no
network weights. The computation is the authors' package ``frd-score`` (FRD v1: its 3D
extraction settings, joint min-max normalisation of the features over both sets, log of the
squared Fréchet distance); medgen lists and checks the files and reports the value. Lower is
better; 0 for identical sets.

The package and a pyradiomics that builds on Python ≥ 3.10 (``pyradiomics-bhklab``, a fork of
the unmaintained PyPI ``pyradiomics``) are the optional extra ``frd``:
``pip install 'medgen[frd]'``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medgen_cli.errors import MedgenError

INSTALL_HINT = "install the optional extra: pip install 'medgen[frd]' (frd-score + pyradiomics-bhklab)"


@dataclass
class FRDResult:
    """One FRD value and what it was computed from."""

    frd: float
    num_real: int
    num_fake: int
    version: str
    package_version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def missing_reason() -> str | None:
    """Why FRD cannot run here (``None`` when it can): the package or pyradiomics is missing."""
    import importlib.util

    for module, dist in (("frd_score", "frd-score"), ("radiomics", "pyradiomics-bhklab")):
        if importlib.util.find_spec(module) is None:
            return f"{dist} is not installed"
    return None


def volume_files(folder: Path, role: str) -> list[Path]:
    """The sorted ``.nii``/``.nii.gz`` files of ``folder`` (not recursive), each a readable 3D
    volume, at least two (a covariance needs two samples).

    Raises:
        MedgenError: not a folder, fewer than two volumes, or a file that is not a 3D volume.
    """
    from medgen_cli.data.volumes import check_volume_files
    from medgen_cli.metrics.fid.inputs import list_niftis

    if not folder.is_dir():
        raise MedgenError(f"{role} {folder} is not a folder", "give a folder of NIfTI volumes")
    files = list_niftis(folder)
    if len(files) < 2:
        raise MedgenError(f"{role} {folder} holds {len(files)} NIfTI volume(s); FRD needs at least 2 per set")
    check_volume_files(files, 3)
    return files


def compute_frd(real: str | Path, fake: str | Path, workers: int | None = None) -> FRDResult:
    """FRD v1 of the volumes in ``fake`` against those in ``real`` (the package's defaults).

    Args:
        real: folder of reference NIfTI volumes.
        fake: folder of generated (or other) NIfTI volumes.
        workers: processes extracting features (default: the package's, cores - 2, at least 1).

    Raises:
        MedgenError: the extra is not installed, a bad folder or file, or no features extracted.
    """
    # The user's inputs first: a wrong folder is the same mistake with or without the extra.
    if workers is not None and workers < 1:
        raise MedgenError(f"--workers must be at least 1, not {workers}")
    real_files = volume_files(Path(real), "REAL")
    fake_files = volume_files(Path(fake), "FAKE")
    reason = missing_reason()
    if reason is not None:
        raise MedgenError(f"FRD needs frd-score and pyradiomics: {reason}", INSTALL_HINT)
    import contextlib
    import io

    import frd_score

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its value; the caller reports it
            value = frd_score.compute_frd([[str(f) for f in real_files], [str(f) for f in fake_files]],
                                          frd_version=frd_score.FRD_VERSION_V1, num_workers=workers)
    except (RuntimeError, ValueError) as exc:
        raise MedgenError(f"FRD failed: {str(exc).splitlines()[0]}", "run with --debug for the details") from exc
    return FRDResult(frd=float(value), num_real=len(real_files), num_fake=len(fake_files),
                     version=frd_score.FRD_VERSION_V1, package_version=frd_score.__version__)
