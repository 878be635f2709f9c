"""Precision, recall, density and coverage of generated samples in a feature space.

Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models" (density,
coverage) and Kynkäänniemi et al. 2019 (improved precision and recall), computed as the authors'
``prdc`` package computes them (equal values; the tests compare with it):

* every real (fake) sample gets a ball whose radius is the distance to its ``k``-th nearest
  neighbour within its own set;
* **precision**: share of fake samples inside at least one real ball (fidelity);
* **recall**: share of real samples inside at least one fake ball (diversity);
* **density**: real balls containing each fake sample, averaged, divided by ``k`` (about 1 when
  the two distributions are equal; above 1 when fakes crowd dense real regions);
* **coverage**: share of real samples whose ball contains at least one fake sample.

FID alone cannot tell a model that draws one mode of the data perfectly from one that draws every
mode roughly; coverage can (a model drawing one of two equally likely modes covers ~half).
"""

from __future__ import annotations

import numpy as np

from medgen_cli.errors import MedgenError

NAMES = ("precision", "recall", "density", "coverage")
DEFAULT_K = 5  # the paper's default


def check_sample_count(n: int, k: int, what: str) -> None:
    """Raise unless a set of ``n`` samples has a ``k``-th nearest other sample.

    Raises:
        MedgenError: ``n <= k`` (or ``k < 1``), naming ``what`` (e.g. ``FAKE``).
    """
    if k < 1 or n <= k:
        raise MedgenError(f"precision/recall with k={k} needs more than {k} samples in each set "
                          f"({what} has {n})", "lower --prdc-k or give more samples")


def _distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances ``[len(x), len(y)]`` (float64, clipped at 0 against rounding)."""
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.maximum(sq, 0.0))


BLOCK = 2048  # rows of a distance matrix held at once (2048 x 50,000 float64 = 0.8 GB)


def kth_neighbour_radii(x: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Distance of each row to its ``k``-th nearest other row (its own zero distance excluded):
    the ball radii of a set. A fixed real set's radii can be computed once and passed to
    :func:`prdc` (``real_radii``) at every evaluation."""
    x = np.asarray(x, dtype=np.float64)
    radii = np.empty(len(x))
    for start in range(0, len(x), BLOCK):
        d = _distances(x[start:start + BLOCK], x)
        d[np.arange(len(d)), np.arange(start, start + len(d))] = 0.0
        radii[start:start + len(d)] = np.partition(d, k, axis=1)[:, k]
    return radii


def prdc(real: np.ndarray, fake: np.ndarray, k: int = DEFAULT_K,
         real_radii: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real``.

    Args:
        real, fake: feature arrays ``[N, d]`` and ``[M, d]`` (e.g. Inception pool features).
        k: nearest neighbour defining each sample's ball (the paper's default 5).
        real_radii: ``kth_neighbour_radii(real, k)`` when already known (its O(N²) pass is then
            skipped; an in-training tracker compares every evaluation with the same real set).

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as floats.

    Raises:
        MedgenError: fewer than ``k + 1`` samples in a set, or differing feature sizes.
    """
    x = np.asarray(real, dtype=np.float64)
    y = np.asarray(fake, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise MedgenError(f"precision/recall: feature arrays differ ({x.shape} vs {y.shape})")
    check_sample_count(len(x), k, "the real set")
    check_sample_count(len(y), k, "the fake set")
    if real_radii is None:
        real_radii = kth_neighbour_radii(x, k)
    elif np.shape(real_radii) != (len(x),):
        raise MedgenError(f"precision/recall: {np.shape(real_radii)} radii for {len(x)} real samples")
    fake_radii = kth_neighbour_radii(y, k)
    in_real_ball = np.zeros(len(y), dtype=bool)  # per fake: inside some real ball (precision)
    real_balls = np.zeros(len(y))  # per fake: how many real balls hold it (density)
    covered = np.empty(len(x), dtype=bool)  # per real: a fake inside its ball (coverage)
    recalled = np.empty(len(x), dtype=bool)  # per real: inside some fake ball (recall)
    for start in range(0, len(x), BLOCK):
        d = _distances(x[start:start + BLOCK], y)  # [real block, fake]
        radii = real_radii[start:start + len(d), None]
        inside = d < radii
        in_real_ball |= inside.any(axis=0)
        real_balls += inside.sum(axis=0)
        covered[start:start + len(d)] = d.min(axis=1) < radii[:, 0]
        recalled[start:start + len(d)] = (d < fake_radii[None, :]).any(axis=1)
    return {
        "precision": float(in_real_ball.mean()),
        "recall": float(recalled.mean()),
        "density": float(real_balls.mean() / k),
        "coverage": float(covered.mean()),
    }
