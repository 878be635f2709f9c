"""Autoencoder reconstruction in overlapping tiles (``medgen sample AE_RUN --input VOL --no-resize``).

Why tiled and whole-volume reconstructions agree, and how closely: a network of convolutions
alone (``model.norm: none``, no attention, the CPU preset's kind) is local, so a tile's output is
the whole volume's wherever a voxel lies at least the receptive-field radius R away from every
tile border inside the volume (checked to float rounding below, with R measured from the impulse
response: 17 voxels for the tiny network). Nearer a border the tile sees zeros instead of its
neighbours; MONAI's Gaussian blending (sigma = 1/8 of the tile) gives those voxels little
weight, so with tiles of at least 2R the blended difference is small next to the
reconstruction error itself. Measured on the tiny network after 150 L1 steps (PSNR at data
range 1, reconstruction vs input 25–26 dB): tiled vs whole 42–50 dB for 32-voxel tiles at
overlap 0.25–0.5, and 36–37 dB for 16-voxel tiles (< 2R); after 60 steps 35–44 dB (a less
trained network leans on far context more; an untrained one gives 22–27 dB). The test asks
for ≥ 40 dB with 32-voxel tiles at overlaps where it measured ≥ 49 dB, and for tiling to cost
at most 0.5 dB of reconstruction PSNR. GroupNorm networks normalise each tile by its own
statistics, so they differ everywhere (the benchmark reports by how much).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from medgen_cli.errors import MedgenError

REPO = Path(__file__).resolve().parents[2]
TINY_AE = REPO / "configs" / "tiny" / "autoencoder.yaml"
LOCAL = ["model.norm=none", "model.initial_latent_std=0.01"]


def _scene(n: int, seed: int = 0) -> torch.Tensor:
    """``[1, 1, n, n, n]``: two balls of different brightness on a faint smooth background."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32)] * 3, indexing="ij"), -1)
    vol = 0.1 * np.sin(g[..., 0] / 5.0) ** 2
    for radius, value in ((0.28 * n, 0.8), (0.12 * n, 0.4)):
        vol += value * (np.linalg.norm(g - rng.uniform(radius, n - radius, 3), axis=-1) < radius)
    return torch.from_numpy(np.clip(vol, 0, 1).astype(np.float32))[None, None]


def _tiny_ae(overrides: list[str], steps: int = 0) -> torch.nn.Module:
    """The tiny config's AutoencoderKL, after ``steps`` L1 updates on 16³ crops of :func:`_scene`."""
    from medgen_cli.config.build import build_config
    from medgen_cli.families.autoencoder.family import build_autoencoder
    from medgen_cli.families.autoencoder.tiles import reconstruct

    torch.manual_seed(0)
    ae = build_autoencoder(build_config("autoencoder", TINY_AE, overrides))
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    vols = torch.cat([_scene(32, seed) for seed in range(4)])
    for step in range(steps):
        i, j, k = np.random.default_rng(step).integers(0, 17, 3)
        loss = torch.nn.functional.l1_loss(reconstruct(ae, vols[..., i:i + 16, j:j + 16, k:k + 16]),
                                           vols[..., i:i + 16, j:j + 16, k:k + 16])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ae.eval()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))


def test_a_tile_is_the_whole_volume_beyond_the_receptive_field() -> None:
    from medgen_cli.families.autoencoder.tiles import reconstruct

    ae = _tiny_ae(LOCAL)
    n = 48
    with torch.no_grad():
        impulse = torch.zeros(1, 1, n, n, n)
        impulse[..., n // 2, n // 2, n // 2] = 1.0
        response = (reconstruct(ae, impulse) - reconstruct(ae, torch.zeros_like(impulse)))[0, 0, n // 2, n // 2]
        radius = 1 + max(r for r in range(n // 2) if float(response[n // 2 + r]) != 0.0)  # measured
        assert 4 <= radius <= 20, radius
        x = _scene(n)
        whole = reconstruct(ae, x)
        lo, hi = 4, n - 4  # a window with all six faces inside the volume
        window = reconstruct(ae, x[..., lo:hi, lo:hi, lo:hi])
    inner = (slice(radius, hi - lo - radius),) * 3
    far = window[(..., *inner)] - whole[(..., *[slice(lo + radius, hi - radius)] * 3)]
    assert float(far.abs().max()) < 1e-6  # float rounding only (outputs span ~0.2)
    near = window[..., 0, :, :] - whole[..., lo, lo:hi, lo:hi]  # a face cut out of the volume differs
    assert float(near.abs().max()) > 1e-3


@pytest.fixture(scope="module")
def trained_local_ae() -> torch.nn.Module:
    return _tiny_ae(LOCAL, steps=150)


@pytest.mark.parametrize("size,overlap", [(48, 0.25), (64, 0.5)])
def test_tiled_reconstruction_agrees_with_the_whole_volume(trained_local_ae: torch.nn.Module, size: int,
                                                           overlap: float) -> None:
    from medgen_cli.families.autoencoder.tiles import reconstruct, reconstruct_tiled

    x = _scene(size, seed=7)
    with torch.no_grad():
        whole = reconstruct(trained_local_ae, x)
        tiled = reconstruct_tiled(trained_local_ae, x, (32,), overlap, factor=2)
    assert tiled.shape == whole.shape
    seam, quality = _psnr(tiled, whole), _psnr(whole, x)
    assert quality > 20.0  # the network reconstructs (not an agreement of two blanks)
    assert seam >= 40.0, seam
    assert _psnr(tiled, x) >= quality - 0.5  # tiling costs at most half a dB of reconstruction


def test_a_volume_within_one_tile_is_reconstructed_whole() -> None:
    from medgen_cli.families.autoencoder.tiles import reconstruct, reconstruct_tiled

    ae = _tiny_ae([])  # GroupNorm: any tiling would change the output
    x = _scene(16)
    with torch.no_grad():
        torch.testing.assert_close(reconstruct_tiled(ae, x, (16, 16, 16), 0.25, factor=2), reconstruct(ae, x))
        odd = reconstruct_tiled(ae, _scene(16)[..., :15, :16, :13], (16,), 0.25, factor=2)
    assert odd.shape[2:] == (15, 16, 13)  # padded to the network's multiple, cropped back


@pytest.mark.parametrize("flags,match", [
    ({"tile": "15"}, "multiple of 2"),
    ({"tile": "16,16"}, "1 or 3 entries"),
    ({"tile": "a,b"}, "whole numbers"),
    ({"overlap": 1.0}, "--overlap"),
])
def test_bad_tiles_are_one_line(tmp_path: Path, make_volumes: Callable[..., Path], train_ae: Callable[..., Path],
                                flags: dict, match: str) -> None:
    from medgen_cli.engine.inference import infer_to_dir

    data = make_volumes(tmp_path / "d", n_train=2, n_val=1)
    run = train_ae(data, tmp_path / "runs", steps=1)
    with pytest.raises(MedgenError, match=match):
        infer_to_dir(run, "sample", {"input": data / "val" / "vol_000.nii.gz", **flags}, tmp_path / "o", device="cpu")


def test_no_resize_keeps_the_input_grid_and_affine(tmp_path: Path, make_volumes: Callable[..., Path],
                                                   train_ae: Callable[..., Path], volume_affine: np.ndarray,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import nibabel as nib
    from typer.testing import CliRunner

    from medgen_cli.cli.app import app, main

    small = make_volumes(tmp_path / "d", n_train=2, n_val=1)
    big = make_volumes(tmp_path / "big", n_train=1, n_val=1, size=40)
    run = train_ae(small, tmp_path / "runs", steps=2)
    src = big / "val" / "vol_000.nii.gz"
    res = CliRunner().invoke(app, ["sample", str(run), "--input", str(src), "--no-resize", "--tile", "16",
                                   "--overlap", "0.5", "--out", str(tmp_path / "rec"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    img = nib.load(str(next((tmp_path / "rec").glob("*.nii.gz"))))
    assert img.shape == (40, 40, 40)
    np.testing.assert_allclose(img.affine, volume_affine)
    assert np.isfinite(np.asarray(img.dataobj)).all()
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(run), "--input", str(src), "--tile", "15", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "multiple of 2" in err and "Traceback" not in err
