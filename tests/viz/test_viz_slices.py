"""Slice and image grids: PNG sizes and content."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medgen_cli.errors import MedgenError
from medgen_cli.viz.slices import save_image_grid, save_slice_grid


def test_slice_grid_size(tmp_path):
    vols = [np.random.default_rng(0).random((16, 12, 10)), np.zeros((16, 16, 16))]
    out = save_slice_grid(vols, tmp_path / "g.png", n_slices=2, mip=True, titles=["a", "b"], dpi=50)
    with Image.open(out) as im:
        # 3 planes x (2 slices + 1 MIP) = 9 columns, 2 rows, 2 inch panels at 50 dpi.
        assert im.size == (9 * 100, 2 * 100)
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_slice_grid_2d_and_errors(tmp_path):
    out = save_slice_grid([np.eye(8)], tmp_path / "e.png", dpi=40)
    with Image.open(out) as im:
        assert im.size == (80, 80)
    with pytest.raises(MedgenError, match="plane"):
        save_slice_grid([np.zeros((4, 4, 4))], tmp_path / "x.png", axes=("top",))
    with pytest.raises(MedgenError):
        save_slice_grid([np.zeros((2, 2, 4, 4, 4))], tmp_path / "x.png")


@pytest.mark.parametrize("shape,mode", [((5, 8, 6), "L"), ((5, 8, 6, 3), "RGB"), ((5, 1, 8, 6), "L")])
def test_image_grid_pixels(tmp_path, shape, mode):
    imgs = np.random.default_rng(1).random(shape).astype(np.float32)
    out = save_image_grid(imgs, tmp_path / "g.png", ncols=3, pad=2)
    with Image.open(out) as im:
        assert im.mode == mode and im.size == (3 * 6 + 2 * 2, 2 * 8 + 2)
        arr = np.asarray(im)
    first = imgs[0] if imgs.ndim == 3 or shape[-1] == 3 else (imgs[0, 0] if shape[1] == 1 else imgs[0])
    np.testing.assert_allclose(arr[:8, :6].astype(float) / 255, first, atol=1 / 255 + 1e-6)
