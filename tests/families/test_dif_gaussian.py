"""DIF-Gaussian: network pieces against naive references, the contract, and a short training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medgen_cli.data import cbct
from medgen_cli.data.cbct.geometry import CBCTGeometry
from medgen_cli.families.dif_gaussian.config import DIFGaussianModel
from medgen_cli.families.dif_gaussian.model import DIFGaussianNet, quaternion_to_matrix
from medgen_cli.metrics.recon import psnr
from medgen_cli.recon.classical import classical_recon

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = DIFGaussianModel(encoder_channels=[4, 8], view_feature_dim=4, grid_size=3, gaussian_feature_dim=5,
                              head_hidden=8, decoder_channels=[8, 1], fdk_channels=[], carve_threshold=0.0)


def test_quaternion_matches_scipy() -> None:
    from scipy.spatial.transform import Rotation

    q = torch.randn(5, 4, dtype=torch.float64)
    ours = quaternion_to_matrix(q).numpy()
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]].numpy()).as_matrix()  # scipy wants (x, y, z, w)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def _encoded(seed: int = 0) -> tuple[DIFGaussianNet, object, CBCTGeometry]:
    torch.manual_seed(seed)
    geo = CBCTGeometry().scaled(8)
    net = DIFGaussianNet(TINY_MODEL)
    with torch.no_grad():
        for p in net.param_head.parameters():
            p.normal_(0, 2.0)  # push offsets/scales to their bounds
        enc = net.encode(torch.rand(2, 3, 8, 8), torch.rand(2, 3) * 3, geo)
    return net, enc, geo


def test_gaussian_parameters_stay_in_bounds() -> None:
    net, enc, _ = _encoded()
    cell = 2.0 / TINY_MODEL.grid_size
    off = enc.means - net.grid_centres
    assert off.abs().max() <= cell / 2 + 1e-6
    lo, hi = TINY_MODEL.scale_range
    assert enc.scales.min() >= lo * cell - 1e-6 and enc.scales.max() <= hi * cell + 1e-6
    eye = torch.eye(3).expand_as(enc.rotations)
    assert torch.allclose(enc.rotations @ enc.rotations.transpose(-1, -2), eye, atol=1e-5)


def test_gaussian_features_match_a_naive_loop() -> None:
    net, enc, _ = _encoded(1)
    pts = torch.rand(2, 7, 3) * 2 - 1
    with torch.no_grad():
        ours = net.gaussian_features(enc, pts)
    k = TINY_MODEL.k_nearest
    for b in range(2):
        for i in range(7):
            d = ((enc.means[b] - pts[b, i]) ** 2).sum(-1)
            near = torch.argsort(d)[:k]
            total = torch.zeros(TINY_MODEL.gaussian_feature_dim)
            for g in near:
                r, s = enc.rotations[b, g], torch.diag(enc.scales[b, g])
                cov = r @ s @ s.T @ r.T                                   # Σ = R S Sᵀ Rᵀ
                diff = pts[b, i] - enc.means[b, g]
                total += torch.exp(-0.5 * diff @ torch.linalg.inv(cov) @ diff) * enc.features[b, g]
            assert torch.allclose(ours[b, i], total, atol=1e-4), (b, i)


def test_decoder_equals_the_concatenating_conv_stack() -> None:
    """``decode`` (one matmul for every layer's x0 part) = the 1x1 convs over cat([x, x0]) layer by layer."""
    torch.manual_seed(0)
    net = DIFGaussianNet(TINY_MODEL.model_copy(update={"decoder_channels": [8, 6, 1]}))
    x0 = torch.randn(2, 50, net.decoder[0].in_channels)
    x = x0.transpose(1, 2)
    ref = x
    for i, layer in enumerate(net.decoder):
        ref = layer(ref if i == 0 else torch.cat([ref, x], 1))
        ref = torch.relu(ref) if i < len(net.decoder) - 1 else ref
    torch.testing.assert_close(net.decode(x0), ref[:, 0], rtol=1e-5, atol=1e-6)


def test_view_features_are_max_fused_and_shared() -> None:
    """Permuting the views (with their angles) leaves every prediction unchanged."""
    net, _, geo = _encoded(2)
    proj, ang, pts = torch.rand(1, 4, 8, 8), torch.rand(1, 4) * 3, torch.rand(1, 20, 3) * 2 - 1
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        a = net(proj, ang, pts, geo)
        b = net(proj[:, perm], ang[:, perm], pts, geo)
    assert a.shape == (1, 20) and torch.allclose(a, b, atol=1e-5)


def test_family_contract(cbct_data: Path, tmp_path: Path) -> None:
    from tests.contract import check_family_contract

    tiny = yaml.safe_load((REPO / "configs" / "tiny" / "dif_gaussian.yaml").read_text())
    overrides = [f"data.root={cbct_data}", "data.points_per_case=256"]
    overrides += [f"model.{k}={json.dumps(v)}" for k, v in tiny["model"].items()]
    overrides += ["optimizer.kind=adam", "trainer.batch_size=2"]
    check_family_contract("dif-gaussian", overrides, tmp_path, steps=4)


def test_training_lowers_the_loss_and_beats_fdk(trained_run: Path, cbct_data: Path) -> None:
    """Tiny model, 200 CPU steps on ten 16³ phantoms: better than FDK at 10 views on the held-out case."""
    from medgen_cli.engine.run_loading import load_run

    lines = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    losses = [x["train/loss"] for x in lines if "train/loss" in x]
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:2])
    assert any("val/psnr" in x for x in lines)
    loaded = load_run(trained_run, checkpoint="best", device="cpu")
    case = cbct.read_case(next(iter(sorted((cbct_data / "test").glob("*.h5")))))
    recon = loaded.family.reconstruct_case(loaded.ctx.eval_module("model"), case, 10, resolution=16).numpy()
    ours, fdk = psnr(recon, case.volume), psnr(classical_recon(case, 10, "fdk"), case.volume)
    print(f"dif-gaussian {ours:.2f} dB vs FDK {fdk:.2f} dB at 10 views")
    assert ours > fdk + 0.5


def test_visual_hull_carves_air_and_fdk_features_are_sampled_at_voxel_centres() -> None:
    """Points whose ray misses the object in some view are exactly 0; the FDK volume is read at
    voxel centres (the points the trainer and reconstruct use)."""
    from medgen_cli.data.cbct.grids import normalized_grid
    from medgen_cli.families.dif_gaussian.model import fdk_volumes, sample_volume

    torch.manual_seed(0)
    geo = CBCTGeometry().scaled(8)
    vol = np.zeros((8, 8, 8), np.float32)
    vol[3:5, 3:5, 3:5] = 0.8                                            # a small central cube
    ang = torch.tensor(geo.angles()[[0, 12, 25, 37]], dtype=torch.float32)
    raw = torch.as_tensor(cbct.simulate(vol, geo, ang.numpy()))[None]
    fdk = fdk_volumes(raw, ang[None], geo)
    pts = normalized_grid(8)[None]
    np.testing.assert_allclose(sample_volume(fdk, pts)[0, :, 0].numpy(), fdk[0, 0].reshape(-1).numpy(), atol=1e-5)
    model = TINY_MODEL.model_copy(update={"fdk_channels": [4, 8], "fdk_features": 3, "carve_threshold": 1e-3})
    net = DIFGaussianNet(model)
    with torch.no_grad():
        out = net(raw / geo.extent, ang[None], pts, geo, fdk)[0].reshape(8, 8, 8)
    assert out[0, 0, 0] == 0 and out[7, 0, 7] == 0                      # corners: outside the hull
    assert (out[3:5, 3:5, 3:5] > 0).all()                                # the object: sigmoid > 0
    assert (out == 0).float().mean() > 0.5


def test_decoder_weight_recovers_the_mix_that_made_the_projections() -> None:
    """Projections of 0.3·X + 0.7·Y (diffct) → weight 0.3 of X; of X alone → 1; of Y alone → 0."""
    from medgen_cli.families.dif_gaussian.consistency import decoder_weight

    geo = CBCTGeometry().scaled(16)
    x, y = (torch.from_numpy(cbct.window(cbct.phantom_hu(16, seed=s))) for s in (1, 2))
    ang = torch.tensor(geo.angles()[::5], dtype=torch.float32)                 # 10 views
    def measured(vol: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(cbct.simulate(vol.numpy(), geo, ang.numpy()))
    assert decoder_weight(x, y, measured(0.3 * x + 0.7 * y), ang, geo) == pytest.approx(0.3, abs=0.03)
    assert decoder_weight(x, y, measured(x), ang, geo) > 0.97
    assert decoder_weight(x, y, measured(y), ang, geo) < 0.03


def test_reconstruction_blends_decoder_and_refined_fdk_on_grids_and_points(trained_run: Path, cbct_data: Path) -> None:
    """With consistency_blend the volume is w·decoder + (1 - w)·(FDK + UNet, carved), one w in
    [0, 1] for the whole case; querying the grid's points one by one gives the same values."""
    from medgen_cli.engine.run_loading import load_run
    from medgen_cli.data.cbct.grids import normalized_grid

    loaded = load_run(trained_run, checkpoint="best", device="cpu")
    fam, net = loaded.family, loaded.ctx.eval_module("model")
    assert fam.cfg.model.consistency_blend and fam.cfg.model.fdk_channels
    case = cbct.read_case(next(iter(sorted((cbct_data / "test").glob("*.h5")))))
    blended = fam.reconstruct_case(net, case, 10, resolution=16)
    by_points = fam.reconstruct_case(net, case, 10, points=normalized_grid(16))
    np.testing.assert_allclose(by_points.numpy(), blended.reshape(-1).numpy(), atol=1e-5)

    fam.cfg = fam.cfg.model_copy(update={"model": fam.cfg.model.model_copy(update={"consistency_blend": False})})
    decoder = fam.reconstruct_case(net, case, 10, resolution=16)
    idx = cbct.view_indices(case.projections.shape[0], 10)
    proj = torch.from_numpy(case.projections[idx])[None]
    ang = torch.from_numpy(case.angles[idx]).float()[None]
    with torch.no_grad():
        enc = net.encode(proj / fam._scale(), ang, fam.geometry, fam._fdk(proj, ang))
        hull = net.hull(enc, fam.geometry.project_points_normalized(normalized_grid(16)[None], ang))
    local = (enc.volume_features[0, 0] + enc.volume_features[0, 1]).clamp(0, 1) * hull[0].reshape(16, 16, 16)
    d, r = (decoder - local).reshape(-1).double(), (blended - local).reshape(-1).double()
    w = float(d @ r / (d @ d))
    assert 0.0 <= w <= 1.0
    np.testing.assert_allclose(blended.numpy(), (w * decoder + (1 - w) * local).numpy(), atol=1e-5)
    assert float((blended - decoder).abs().max()) > 1e-3 or w > 0.999   # the blend did something, or chose the decoder
