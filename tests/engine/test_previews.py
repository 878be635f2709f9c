"""Previews a person reads (issue 29, item 10): interpolation strips and GIFs zoomed like the sample
grids (a 16-px GAN gave a 142x16 strip and a 16x16 GIF), every frame labelled with its t and set
apart by separators (volume strips too), and compare.png titles that do not run into each other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medgen_cli.engine.outputs import write_samples
from medgen_cli.contract.samples import Samples, frame_samples


def _caption(img: Image.Image, i: int, tile: int = 128, sep: int = 4) -> np.ndarray:
    """The caption band under frame ``i`` of a strip."""
    arr = np.asarray(img.convert("L"))
    return arr[tile:, i * (tile + sep): i * (tile + sep) + tile]


def test_2d_strip_and_gif_are_zoomed_like_the_grid_and_labelled(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = frame_samples(rng.random((8, 1, 16, 16)).astype(np.float32), value_range=(0.0, 1.0))
    write_samples(frames, tmp_path / "out", ["png"])
    preview = tmp_path / "out" / "preview"
    with Image.open(preview / "strip.png") as strip:
        assert strip.size == (8 * 128 + 7 * 4, 128 + 18)     # 16 px x 8 zoom, separators, caption band
        captions = [_caption(strip, i) for i in range(8)]
        # The frame itself is the sample zoomed 8x, nearest neighbour.
        first = np.asarray(strip.convert("L"))[:128, :128]
        np.testing.assert_array_equal(first[::8, ::8], (frames.arrays[0, 0] * 255 + 0.5).astype(np.uint8))
        assert np.all(np.asarray(strip.convert("L"))[:, 128:132] == 128)   # a grey separator
    assert all(c.max() > 200 for c in captions)                         # white text in every band
    assert not np.array_equal(captions[0], captions[-1])                # t=0.00 vs t=1.00
    with Image.open(preview / "interpolation.gif") as gif:
        assert gif.size == (128, 128 + 18) and gif.n_frames == 8
        band0 = np.asarray(gif.convert("L"))[128:]
        gif.seek(7)
        assert not np.array_equal(band0, np.asarray(gif.convert("L"))[128:])
    with Image.open(preview.parent / "frame_000.png") as f0:
        assert f0.size == (16, 16)     # the frames themselves keep their pixels


def test_volume_strip_has_labels_and_separators(tmp_path: Path) -> None:
    vols = np.zeros((5, 1, 8, 8, 8), np.float32)   # dark volumes: black separators would vanish
    vols[:, :, 2:6, 2:6, :] = np.linspace(0.1, 0.5, 5)[:, None, None, None, None]
    write_samples(frame_samples(vols), tmp_path / "out", ["npy"])
    with Image.open(tmp_path / "out" / "preview" / "strip.png") as strip:
        assert strip.size == (5 * 128 + 4 * 4, 128 + 18)
        arr = np.asarray(strip.convert("L"))
        assert np.all(arr[:, 128:132] == 128) and np.all(arr[:, 3 * 132 - 4: 3 * 132] == 128)
        assert all(_caption(strip, i).max() > 200 for i in range(5))


def test_compare_titles_do_not_overlap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medgen_cli.viz.slices as slices

    figures = []
    real_save = slices._save_figure
    monkeypatch.setattr(slices, "_save_figure", lambda fig, out, dpi: (figures.append(fig), real_save(fig, out, dpi))[1])
    rng = np.random.default_rng(0)
    inp = rng.random((2, 1, 16, 16, 16)).astype(np.float32)
    recon = Samples(arrays=inp + 0.05, names=["recon_volume_000", "recon_volume_001"], seeds=[None] * 2,
                    labels=[None] * 2, affine=np.eye(4), preview="compare", references=inp,
                    extra=[{"input": "volume_000.nii.gz"}, {"input": "volume_001.nii.gz"}])
    write_samples(recon, tmp_path / "out", ["npy"])
    fig = figures[-1]
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in (ax.title, *ax.texts) if t.get_text().strip()]
    assert sum("PSNR" in t.get_text() for t in texts) == 2      # each row title once, not on every panel
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert len(boxes) >= 6 * 3
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert not overlaps, overlaps[:2]
