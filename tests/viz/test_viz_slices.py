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
        # 3 planes x (2 slices + 1 MIP) = 9 columns + half a panel of colour bars, 2 rows, 2 inch panels at 50 dpi.
        assert im.size == (int(9.5 * 100), 2 * 100)
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_slice_grid_2d_and_errors(tmp_path):
    out = save_slice_grid([np.eye(8)], tmp_path / "e.png", dpi=40)
    with Image.open(out) as im:
        assert im.size == (int(1.5 * 80), 80)
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


def _ink(region: np.ndarray) -> float:
    """Fraction of non-white pixels."""
    return float((region[..., :3].min(axis=-1) < 250).mean())


def test_every_row_has_a_colour_bar_and_its_own_titles(tmp_path):
    vols = [np.random.default_rng(i).random((12, 12, 12)) * (i + 1) for i in range(3)]
    out = save_slice_grid(vols, tmp_path / "g.png", titles=["first", "second", "third"], dpi=50)
    arr = np.asarray(Image.open(out).convert("RGB"))
    h, w = arr.shape[:2]
    strip = arr[:, int(3 / 3.5 * w):]  # the colour-bar column
    for r in range(3):  # a bar (non-white) in every row's band, not only the first
        assert _ink(strip[r * h // 3:(r + 1) * h // 3]) > 0.05, r
    for r in range(3):  # every row has title text above its panels
        assert _ink(arr[r * h // 3: r * h // 3 + 12, : int(3 / 3.5 * w)]) > 0.003, r


def test_big_grids_are_capped(tmp_path):
    from medgen_cli.viz.slices import MAX_PIXELS, MIN_PANEL_PX, fit_panels

    inches, rows = fit_panels(38, 3)
    assert rows == 38 and MIN_PANEL_PX <= inches * 100 < 200  # shrunk panels, all rows
    inches, rows = fit_panels(100, 3)
    assert inches * 100 == MIN_PANEL_PX and rows == MAX_PIXELS // MIN_PANEL_PX
    vols = [np.zeros((4, 4, 4)) for _ in range(60)]
    with Image.open(save_slice_grid(vols, tmp_path / "big.png")) as im:
        assert max(im.size) <= MAX_PIXELS


def test_comparison_grid_psnr_matches_skimage(tmp_path):
    from skimage.metrics import peak_signal_noise_ratio

    from medgen_cli.viz.slices import psnr, save_comparison_grid

    rng = np.random.default_rng(0)
    a = rng.random((10, 10, 10)).astype(np.float32)
    b = a + rng.normal(0, 0.05, a.shape).astype(np.float32)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=float(a.max() - a.min())), rel=1e-6)
    with Image.open(save_comparison_grid([a], [b], tmp_path / "c.png", names=["v"], dpi=50)) as im:
        assert im.size == (int(3.5 * 100), 3 * 100)  # input, output and error rows


def test_image_grid_upscales_tiny_tiles(tmp_path):
    imgs = np.random.default_rng(2).random((16, 16, 16)).astype(np.float32)
    with Image.open(save_image_grid(imgs, tmp_path / "g.png", min_tile=128)) as im:
        assert im.size == (4 * 128 + 3 * 2, 4 * 128 + 3 * 2)
        arr = np.asarray(im)
    np.testing.assert_allclose(arr[:128:8, :128:8].astype(float) / 255, imgs[0], atol=1 / 255 + 1e-6)
