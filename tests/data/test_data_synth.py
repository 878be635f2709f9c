"""Synthetic phantoms: determinism, classes, layouts."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from medgen_cli.data.synth import PHANTOM_CLASSES, make_phantom_clouds, write_synth_h5
from medgen_cli.errors import MedgenError


def test_phantoms_deterministic_and_labelled():
    a, la = make_phantom_clouds(6, n_points=256, seed=3)
    b, lb = make_phantom_clouds(6, n_points=256, seed=3)
    c, _ = make_phantom_clouds(6, n_points=256, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert list(la) == [0, 1, 2, 0, 1, 2] and np.array_equal(la, lb)
    assert all(x.shape == (256, 3) and x.dtype == np.float32 and np.isfinite(x).all() for x in a)
    assert len(PHANTOM_CLASSES) == 3


def test_shell_is_hollow_and_organ_is_solid():
    clouds, _ = make_phantom_clouds(2, n_points=4000, seed=0)
    organ, shell = clouds
    # Distance to the centroid relative to the farthest point: a shell has no points near its centre.
    def inner_fraction(p):
        d = np.linalg.norm(p - p.mean(0), axis=1)
        return float((d < 0.3 * d.max()).mean())
    assert inner_fraction(organ) > 0.005
    assert inner_fraction(shell) == 0.0


@pytest.mark.parametrize("layout", ["fixed", "groups", "concat"])
def test_write_synth_layouts(tmp_path, layout):
    path = write_synth_h5(tmp_path / "s.h5", 4, n_points=64, layout=layout, with_values=True)
    with h5py.File(path, "r") as f:
        if layout == "fixed":
            assert f["data"].shape == (4, 64, 4) and list(f["label"][:]) == [0, 1, 2, 0]
        elif layout == "groups":
            assert len(f["clouds"]) == 4 and f["clouds/sample_00001"].attrs["label"] == 1
            assert f["clouds/sample_00000/values"].shape[0] == f["clouds/sample_00000/points"].shape[0]
        else:
            assert f["points"].shape[0] == int(f["lengths"][:].sum()) and f["points"].shape[1] == 4
    with pytest.raises(MedgenError, match="already exists"):
        write_synth_h5(path, 2)
    with pytest.raises(MedgenError, match="layout"):
        write_synth_h5(tmp_path / "t.h5", 2, layout="nope")
