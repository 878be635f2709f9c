"""How good are generated volumes: 2.5D FID against held-out volumes next to the real-vs-real
floor, and (class-conditional models) whether a classifier trained on real volumes recognises
each sample's class. Used by ``medgen demo`` and ``benchmarks/quality_ldm.py``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medgen_cli.errors import MedgenError


def write_volumes(volumes: Sequence[np.ndarray] | np.ndarray, folder: Path) -> Path:
    """Each volume as ``folder/vol_00000.nii.gz`` (2.5D FID reads folders of NIfTI)."""
    from medgen_cli.io import save_nifti

    folder.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(volumes):
        save_nifti(np.asarray(v, dtype=np.float32), folder / f"vol_{i:05d}.nii.gz", overwrite=True)
    return folder


def _options(center_fraction: float, window: tuple[float, float] | None, device: str) -> Any:
    from medgen_cli.metrics.fid.evaluate import FIDOptions

    return FIDOptions(device=device, center_fraction=center_fraction, window=window, use_cache=False, sqrtm="eigh")


def volume_fids(reference: Sequence[np.ndarray] | np.ndarray, others: dict[str, Sequence[np.ndarray] | np.ndarray],
                center_fraction: float = 1.0, window: tuple[float, float] | None = (0.0, 1.0),
                device: str = "cpu") -> dict[str, float]:
    """2.5D FID (mean over the three planes of the slice-feature FIDs) of each set in ``others``
    against ``reference``, with medgen's verified Inception weights; the reference's features are
    computed once.

    Args:
        reference: volumes ``[N, D, H, W]``.
        others: name → volumes.
        center_fraction: central fraction of slice positions used per axis (fewer slices: faster).
        window: fixed intensity window (data in [0, 1]: samples outside it are clipped, as a
            viewer would show them); ``None`` scales each volume by its own min..max.
        device: where Inception runs.

    Raises:
        MedgenError: no FID weights available (the message says how to get them).
    """
    from medgen_cli.metrics.fid.evaluate import compare, set_stats

    opts = _options(center_fraction, window, device)
    with tempfile.TemporaryDirectory(prefix="medgen-fid-") as tmp:
        ref = set_stats(write_volumes(reference, Path(tmp) / "reference"), opts)
        return {name: float(compare(ref, set_stats(write_volumes(vols, Path(tmp) / name), opts, label=name), opts)["fid"])
                for name, vols in others.items()}


def volume_fid(real: Sequence[np.ndarray] | np.ndarray, fake: Sequence[np.ndarray] | np.ndarray,
               **kwargs: Any) -> float:
    """2.5D FID of two volume sets (see :func:`volume_fids`)."""
    return volume_fids(real, {"fake": fake}, **kwargs)["fake"]


def fid_with_floor(reference: Sequence[np.ndarray] | np.ndarray, held_out: Sequence[np.ndarray] | np.ndarray,
                   samples: Sequence[np.ndarray] | np.ndarray, **kwargs: Any) -> dict[str, float]:
    """``fid``: samples vs ``held_out``; ``fid_floor``: ``reference`` (other real volumes, as many
    as the samples) vs ``held_out`` — what a perfect generator of this many volumes would score."""
    n = len(samples)
    if len(reference) < n:
        raise MedgenError(f"the real-vs-real floor needs {n} reference volumes, got {len(reference)}",
                          "draw fewer samples or give more real volumes")
    out = volume_fids(held_out, {"fid": samples, "fid_floor": reference[:n]}, **kwargs)
    return {"fid": out["fid"], "fid_floor": out["fid_floor"]}


def sample_class_accuracy(train_volumes: Sequence[np.ndarray] | np.ndarray, train_labels: Sequence[int],
                          samples: Sequence[np.ndarray] | np.ndarray, sample_labels: Sequence[int],
                          check_volumes: Sequence[np.ndarray] | np.ndarray | None = None,
                          check_labels: Sequence[int] | None = None, steps: int = 500, seed: int = 0,
                          also: dict[str, tuple[Sequence[np.ndarray] | np.ndarray, Sequence[int]]] | None = None
                          ) -> dict[str, float]:
    """Accuracy of a classifier trained on real volumes at recognising each sample's class
    (``sample_accuracy``) and, as its sanity check, held-out real volumes (``real_accuracy``);
    ``also`` names further labelled sets scored by the same classifier (``<name>_accuracy``, e.g.
    an autoencoder's reconstructions of the held-out volumes: the most its samples can reach)."""
    from medgen_cli.metrics.classify import class_accuracy, train_classifier

    net = train_classifier(train_volumes, train_labels, steps=steps, seed=seed)
    out = {"sample_accuracy": class_accuracy(net, samples, sample_labels)}
    if check_volumes is not None and check_labels is not None and len(check_volumes):
        out["real_accuracy"] = class_accuracy(net, check_volumes, check_labels)
    for name, (volumes, labels) in (also or {}).items():
        out[f"{name}_accuracy"] = class_accuracy(net, volumes, labels)
    return out
