"""Shape-generation metrics with the Chamfer distance: MMD, coverage (COV) and 1-NNA.

Definitions (Achlioptas et al. 2018; Yang et al. 2019, PointFlow), for a reference set ``R``
(real shapes) and a generated set ``G``:

* Chamfer distance ``CD(X, Y) = mean_x min_y ‖x − y‖² + mean_y min_x ‖x − y‖²`` (squared L2).
* **MMD** ``= mean_{r ∈ R} min_{g ∈ G} CD(r, g)`` — fidelity (lower is better).
* **COV** ``= |{argmin_{r ∈ R} CD(g, r) : g ∈ G}| / |R|`` — the share of real shapes that are
  some generated shape's nearest neighbour (higher is better).
* **1-NNA**: leave-one-out 1-nearest-neighbour classification of ``R ∪ G`` into its two sets;
  the accuracy is 50% when the sets are indistinguishable (the ideal), 100% when they are apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from medgen_cli.errors import MedgenError


def chamfer_distance(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> float:
    """Symmetric Chamfer distance (mean squared nearest-neighbour distances) of two ``[N, 3]`` sets.

    Raises:
        ValueError: an empty point set.
    """
    import torch

    if len(a) == 0 or len(b) == 0:
        raise ValueError("Chamfer distance of an empty point set")
    ta = torch.as_tensor(np.asarray(a, dtype=np.float64))
    tb = torch.as_tensor(np.asarray(b, dtype=np.float64))

    def one_way(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Exact differences, not the |x|²+|y|²−2xy shortcut: identical shapes must give exactly 0.
        mins = [torch.cdist(x[i:i + chunk], y, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
                for i in range(0, len(x), chunk)]
        return torch.cat(mins).pow(2).mean()

    return float(one_way(ta, tb) + one_way(tb, ta))


def pairwise_cd(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray],
                progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``[len(xs), len(ys)]`` matrix of Chamfer distances."""
    out = np.zeros((len(xs), len(ys)))
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            out[i, j] = chamfer_distance(x, y)
        if progress is not None:
            progress(len(ys))
    return out


def metrics_from_distances(d_rg: np.ndarray, d_rr: np.ndarray, d_gg: np.ndarray) -> dict[str, float]:
    """MMD, COV and 1-NNA from the three distance matrices (real×fake, real×real, fake×fake)."""
    n_r, n_g = d_rg.shape
    mmd = float(d_rg.min(axis=1).mean())
    cov = float(len(np.unique(d_rg.argmin(axis=0))) / n_r)
    # Leave-one-out 1-NN over R ∪ G: a sample is classified by its nearest other sample.
    d_rr = d_rr.astype(np.float64).copy()
    d_gg = d_gg.astype(np.float64).copy()
    np.fill_diagonal(d_rr, np.inf)
    np.fill_diagonal(d_gg, np.inf)
    real_ok = d_rr.min(axis=1) < d_rg.min(axis=1) if n_r > 1 else np.zeros(n_r, bool)
    fake_ok = d_gg.min(axis=1) < d_rg.min(axis=0) if n_g > 1 else np.zeros(n_g, bool)
    nna = float((real_ok.sum() + fake_ok.sum()) / (n_r + n_g))
    return {"mmd_cd": mmd, "cov_cd": cov, "1nna_cd": nna}


def shape_metrics(real: Sequence[np.ndarray], fake: Sequence[np.ndarray],
                  progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """MMD-CD, COV-CD and 1-NNA-CD of generated point sets against real ones.

    Args:
        real: reference shapes, each ``[N_i, 3]``.
        fake: generated shapes, each ``[M_j, 3]``.
        progress: called with the number of pairs done after each row (for a progress bar).

    Returns:
        ``{"mmd_cd", "cov_cd", "1nna_cd", "num_real", "num_fake"}``.

    Raises:
        ValueError: an empty set of shapes or an empty shape.
    """
    if not real or not fake:
        raise ValueError("shape metrics need at least one real and one generated shape")
    d_rg = pairwise_cd(real, fake, progress)
    d_rr = pairwise_cd(real, real, progress)
    d_gg = pairwise_cd(fake, fake, progress)
    out = metrics_from_distances(d_rg, d_rr, d_gg)
    out.update(num_real=float(len(real)), num_fake=float(len(fake)))
    return out


def evaluate_shapes(real: str | Path, fake: str | Path, threshold: float = 0.5, num_points: int = 2048,
                    normalize: bool = False,
                    progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict[str, Any]:
    """The library side of ``medgen eval shapes``: check both inputs, load them as point sets and
    compute :func:`shape_metrics`.

    Args:
        real: reference shapes (a folder or file of point files / NIfTI volumes).
        fake: generated shapes, same kinds.
        threshold: volumes: voxels above it become points.
        num_points: subsample each shape to this many points (0 = all).
        normalize: centre each shape and scale it into the unit sphere first.
        progress: ``progress(description, total)`` returns an ``advance(n)`` callback.

    Returns:
        ``{"real", "fake", "mmd_cd", "cov_cd", "1nna_cd", "num_real", "num_fake"}``.
    """
    check_shape_inputs(real, fake)  # both, before loading either
    real_shapes = load_shapes(real, threshold, num_points, normalize)
    fake_shapes = load_shapes(fake, threshold, num_points, normalize)
    n_r, n_g = len(real_shapes), len(fake_shapes)
    advance = progress("Chamfer distances", n_r * n_g + n_r * n_r + n_g * n_g) if progress else None
    return {"real": str(real), "fake": str(fake), **shape_metrics(real_shapes, fake_shapes, progress=advance)}


def subsample(points: np.ndarray, num: int, seed: int = 0) -> np.ndarray:
    """At most ``num`` points, drawn without replacement with a fixed seed (all when ``num <= 0``)."""
    if num <= 0 or len(points) <= num:
        return points
    idx = np.random.default_rng(seed).choice(len(points), num, replace=False)
    return points[np.sort(idx)]


def normalize_shape(points: np.ndarray) -> np.ndarray:
    """Centre on the mean and scale into the unit sphere (per shape)."""
    p = np.asarray(points, dtype=np.float64)
    p = p - p.mean(axis=0, keepdims=True)
    r = np.linalg.norm(p, axis=1).max()
    return p / r if r > 0 else p


SHAPE_SUFFIXES = (".ply", ".npy", ".h5", ".hdf5", ".nii", ".nii.gz")


def _shape_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MedgenError(f"not found: {path}", "give a folder of point files/volumes or one file")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                   and any(p.name.lower().endswith(s) for s in SHAPE_SUFFIXES))
    if not files:
        raise MedgenError(f"no shapes in {path}", f"expected files ending in {', '.join(SHAPE_SUFFIXES)}")
    volumes = [f for f in files if f.name.lower().endswith((".nii", ".nii.gz"))]
    if volumes and len(volumes) != len(files):
        raise MedgenError(f"{path} holds both NIfTI volumes ({len(volumes)}) and point files "
                          f"({len(files) - len(volumes)}): each shape would count twice",
                          "evaluate one kind per folder (medgen sample writes OUT/<format>/ for several formats)")
    from medgen_cli.data.sample_manifest import check_against_manifest

    check_against_manifest(path, files, "shape files")
    return files


def check_shape_inputs(*paths: str | Path) -> None:
    """Validate every input folder (exists, one kind, matches its manifest) before any is loaded."""
    for p in paths:
        _shape_files(Path(p))


def load_shapes(path: str | Path, threshold: float = 0.5, num_points: int = 2048,
                normalize: bool = False) -> list[np.ndarray]:
    """Point sets from a folder (or one file) of ``.ply``/``.npy``/``.h5`` points or NIfTI volumes.

    Volumes become the world coordinates of their voxels above ``threshold`` (the same rule as
    ``medgen sample --format points``). Each set is subsampled to ``num_points`` (seeded) and,
    with ``normalize``, centred and scaled into the unit sphere.

    Raises:
        MedgenError: missing path, no shape files, or a shape without points.
    """
    from medgen_cli.data.points import load_points, volume_to_points
    from medgen_cli.io import load_nifti

    shapes = []
    for f in _shape_files(Path(path)):
        if f.name.lower().endswith((".nii", ".nii.gz")):
            vol, affine = load_nifti(f)
            pts = volume_to_points(vol, affine, threshold)
        else:
            pts = load_points(f)
        if len(pts) == 0:
            raise MedgenError(f"{f} has no points" + (f" above threshold {threshold}" if f.suffix != ".ply" else ""),
                              "lower --threshold or drop the file")
        pts = subsample(np.asarray(pts, dtype=np.float64), num_points)
        shapes.append(normalize_shape(pts) if normalize else pts)
    return shapes
