"""2D image-folder dataset: listing, modes, resize, flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medgen_cli.data.images import ImageFolderDataset, list_images, load_image
from medgen_cli.errors import MedgenError


def _write(folder, name, arr, mode=None):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(folder / name)


def test_list_images_sorted_recursive_and_filtered(tmp_path):
    _write(tmp_path / "b", "z.png", np.zeros((8, 8), np.uint8))
    _write(tmp_path, "a.jpg", np.zeros((8, 8, 3), np.uint8))
    _write(tmp_path, "c.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    _write(tmp_path / ".hidden", "h.png", np.zeros((8, 8), np.uint8))
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.jpg", "b/z.png", "c.tif"]


def test_list_images_errors(tmp_path):
    with pytest.raises(MedgenError, match="no images"):
        list_images(tmp_path)
    with pytest.raises(MedgenError, match="not found"):
        list_images(tmp_path / "missing")


@pytest.mark.parametrize("channels", [1, 3])
def test_dataset_shapes_range_and_values(tmp_path, channels):
    rgb = np.zeros((20, 10, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    _write(tmp_path, "a.png", rgb)
    _write(tmp_path, "b.png", np.full((16, 16), 128, np.uint8))
    ds = ImageFolderDataset(tmp_path, resolution=16, channels=channels)
    assert len(ds) == 2
    for i in range(2):
        x = ds[i]
        assert x.dtype == torch.float32 and tuple(x.shape) == (channels, 16, 16)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    red = ds[0]
    if channels == 1:  # ITU-R 601 luma of pure red = 299/1000 * 255 -> 76
        assert torch.allclose(red, torch.full_like(red, 76 / 255), atol=1 / 255)
    else:
        assert torch.allclose(red[0], torch.ones(16, 16), atol=1e-3) and float(red[1:].abs().max()) < 1e-3
    assert torch.allclose(ds[1], torch.full_like(ds[1], 128 / 255), atol=1e-4)


def test_16bit_tiff_scaled_by_dtype_range(tmp_path):
    a = np.full((8, 8), 65535 // 2, dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "x.tif")
    img = load_image(tmp_path / "x.tif", 1)
    assert img.shape == (8, 8, 1)
    assert abs(float(img.mean()) - 0.5) < 1e-3


def test_flip_is_horizontal_and_random(tmp_path):
    a = np.zeros((8, 8), np.uint8)
    a[:, :4] = 255  # left half white
    _write(tmp_path, "a.png", a)
    ds = ImageFolderDataset(tmp_path, resolution=8, flip=True)
    torch.manual_seed(0)
    outs = [ds[0] for _ in range(20)]
    left_white = [bool(o[0, :, 0].mean() > 0.5) for o in outs]
    assert any(left_white) and not all(left_white)
    for o in outs:  # a flip mirrors columns only
        assert torch.equal(o, torch.flip(outs[0], dims=(2,))) or torch.equal(o, outs[0])


def test_bad_options_and_corrupt_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MedgenError, match="channels"):
        ImageFolderDataset(tmp_path, resolution=8, channels=2)
    ds = ImageFolderDataset(tmp_path, resolution=8)
    with pytest.raises(MedgenError, match="cannot read image"):
        ds[0]
