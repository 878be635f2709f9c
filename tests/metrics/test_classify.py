"""Class accuracy of samples (``medgen_cli.metrics.sample_quality.sample_class_accuracy``): a
classifier trained on real volumes recognises held-out ones, and each ``also`` set is judged by the
same classifier."""

from __future__ import annotations

import numpy as np

from medgen_cli.metrics.sample_quality import sample_class_accuracy


def _shapes(n: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """Class 0: a filled disc, class 1: a thin ring, at random centres and radii (16², noisy)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    vols, labels = [], []
    for i in range(n):
        c, r = rng.uniform(6, 10, 2), rng.uniform(3.5, 5.5)
        d = np.hypot(yy - c[0], xx - c[1])
        img = (d < r) if i % 2 == 0 else (np.abs(d - r) < 0.8)
        vols.append(img.astype(np.float32) + rng.normal(0, 0.05, img.shape).astype(np.float32))
        labels.append(i % 2)
    return vols, labels


def test_held_out_shapes_are_recognised_and_also_sets_use_the_same_classifier() -> None:
    train, train_labels = _shapes(64, 0)
    val, val_labels = _shapes(16, 1)
    swapped = [1 - y for y in val_labels]
    out = sample_class_accuracy(train, train_labels, val, val_labels, val, val_labels, steps=150,
                                also={"swapped": (val, swapped), "half": (val[:8], val_labels[:8])})
    assert out["sample_accuracy"] >= 0.9 and out["real_accuracy"] == out["sample_accuracy"]
    assert out["swapped_accuracy"] == 1.0 - out["sample_accuracy"]  # the same predictions, labels inverted
    assert 0.0 <= out["half_accuracy"] <= 1.0 and set(out) == {"sample_accuracy", "real_accuracy",
                                                               "swapped_accuracy", "half_accuracy"}
