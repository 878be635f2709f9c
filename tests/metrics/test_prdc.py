"""Precision, recall, density and coverage: equal to the authors' ``prdc`` package, and what they
say about a model that draws one of two modes."""

from __future__ import annotations

import numpy as np
import pytest

from medgen_cli.errors import MedgenError
from medgen_cli.metrics.prdc import NAMES, prdc


def two_modes(n: int, rng: np.random.Generator, modes: tuple[int, ...] = (0, 1), d: int = 16) -> np.ndarray:
    """``n`` points around the centres of ``modes`` (two far-apart Gaussian clusters)."""
    centres = np.stack([np.zeros(d), np.full(d, 10.0)])
    which = rng.choice(modes, n)
    return centres[which] + rng.normal(size=(n, d))


@pytest.mark.parametrize("k", [1, 5])
def test_equals_the_authors_package(k: int) -> None:
    reference = pytest.importorskip("prdc")
    rng = np.random.default_rng(k)
    real = two_modes(120, rng)
    fake = two_modes(90, rng, d=16) * 1.1 + 0.3  # a shifted, wider fake distribution
    ours = prdc(real, fake, k)
    theirs = reference.compute_prdc(real, fake, k)
    assert set(ours) == set(NAMES)
    for name in NAMES:
        assert ours[name] == pytest.approx(float(theirs[name]), abs=1e-12), name
    assert 0 < ours["coverage"] < 1 and 0 < ours["precision"] < 1  # a case where rounding could matter


def test_one_mode_model_covers_half() -> None:
    rng = np.random.default_rng(0)
    real = two_modes(400, rng)
    one_mode = two_modes(400, rng, modes=(1,))
    both = two_modes(400, rng)
    half, full = prdc(real, one_mode), prdc(real, both)
    # Every one-mode sample is realistic, but only its mode is covered.
    # (Precision of equal distributions is below 1: the k-NN balls leave gaps at the edges.)
    assert half["precision"] > 0.8 and full["precision"] > 0.8
    assert abs(half["density"] - full["density"]) < 0.2  # each realistic fake lies in ~k real balls
    assert half["coverage"] == pytest.approx(0.5, abs=0.07) and full["coverage"] > 0.9
    assert half["recall"] < 0.6 < full["recall"]


def test_needs_more_samples_than_k() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(MedgenError, match="more than 5 samples"):
        prdc(rng.normal(size=(5, 4)), rng.normal(size=(50, 4)), 5)
    with pytest.raises(MedgenError, match="differ"):
        prdc(rng.normal(size=(50, 4)), rng.normal(size=(50, 3)))


def test_blocks_give_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large sets are processed in row blocks of the distance matrices: blocks of 7 rows (sets not
    a multiple of it) give exactly the values of one block."""
    from medgen_cli.metrics import prdc as module

    rng = np.random.default_rng(3)
    real, fake = two_modes(60, rng), two_modes(45, rng) * 1.1
    whole = prdc(real, fake, 3)
    monkeypatch.setattr(module, "BLOCK", 7)
    assert prdc(real, fake, 3) == whole


def test_given_real_radii_give_the_same_values_and_are_checked() -> None:
    from medgen_cli.metrics.prdc import kth_neighbour_radii

    rng = np.random.default_rng(4)
    real, fake = two_modes(50, rng), two_modes(40, rng) * 1.2
    radii = kth_neighbour_radii(real, 3)
    assert prdc(real, fake, 3, real_radii=radii) == prdc(real, fake, 3)
    # The radii decide the values: halved radii shrink every real ball, so coverage falls.
    assert prdc(real, fake, 3, real_radii=radii / 2)["coverage"] < prdc(real, fake, 3)["coverage"]
    with pytest.raises(MedgenError, match="radii"):
        prdc(real, fake, 3, real_radii=radii[:-1])
