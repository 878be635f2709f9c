"""sparse-gan: budgeted sparse generation, one WGAN-GP step, the contract suite, sampling."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml

from medgen_cli.families.sparse_gan.config import SparseGANConfig
from medgen_cli.families.sparse_gan.family import SparseGANFamily, collate_sparse
from medgen_cli.families.sparse_gan.networks import SparseGenerator, level_budgets, select_children
from medgen_cli.sparse import minkowski_status

REPO = Path(__file__).resolve().parents[2]
_me_ok, _me_why = minkowski_status()
BACKENDS = ["torch", pytest.param("minkowski", marks=[pytest.mark.minkowski, pytest.mark.skipif(not _me_ok, reason=_me_why)])]
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def tiny_overrides(root: Path, backend: str) -> list[str]:
    tiny = yaml.safe_load((REPO / "configs/tiny/sparse_gan.yaml").read_text())
    out = []

    def flat(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                flat(f"{prefix}{k}.", v)
        else:
            out.append(f"{prefix[:-1]}={yaml.safe_dump(node, default_flow_style=True).strip().removesuffix('...').strip()}")

    flat("", {k: v for k, v in tiny.items() if k != "family"})
    return [*out, f"data.root={root}", f"sparse.backend={backend}"]


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The contract case's balls at 16³ (affine ``AFFINE``)."""
    from tests.families.contract_cases import _sparse_volumes

    return _sparse_volumes(tmp_path_factory.mktemp("sg"))


def test_tiny_preset_and_partial_trainer_section() -> None:
    tiny = SparseGANConfig(**yaml.safe_load((REPO / "configs/tiny/sparse_gan.yaml").read_text()))
    assert tiny.trainer.ema.enabled and tiny.data.voxel_size == 16
    assert SparseGANConfig(trainer={"max_steps": 3}).trainer.ema.enabled  # family default survives a partial trainer
    with pytest.raises(ValueError):
        SparseGANConfig(generator={"init_size": 4, "channels": [8, 4]})  # 4·2 ≠ 64


def test_select_children_budget_threshold_and_floor() -> None:
    prob = torch.tensor([0.9, 0.2, 0.7, 0.6, 0.3, 0.1, 0.95, 0.8])
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    keep = select_children(prob, batch, 4, budget=2, threshold=0.5)
    assert keep.tolist() == [True, False, True, False, True, False, True, True]
    # sample 1 has nothing above 0.5 but keeps its best voxel; sample 3 is empty and stays empty


@pytest.mark.parametrize("backend", BACKENDS)
def test_generator_stays_within_budget(backend: str) -> None:
    torch.manual_seed(0)
    budget = 150
    gen = SparseGenerator(8, 4, [8, 8, 8, 8, 4], voxel_size=64, max_voxels=budget, occupancy_threshold=0.3,
                          backend=backend)
    out = gen(torch.randn(3, 8))
    assert out.stride == 1 and out.batch_size == 3
    assert int(out.counts().max()) <= budget and int(out.counts().min()) >= 1
    assert out.coords[:, 1:].min() >= 0 and out.coords[:, 1:].max() < 64
    budgets = level_budgets(4, 4, budget, 2.0)
    assert budgets[-1] == budget
    # Never more than 8 children of the previous level's budget exist: memory is set by the
    # budget, not by the 64³ volume (262,144 voxels per sample).
    limits = [3 * 4**3 * 8] + [3 * 8 * b for b in budgets[:-1]]
    assert all(c <= lim for c, lim in zip(gen.last_stats["created"], limits))
    assert max(gen.last_stats["created"]) < 0.02 * 3 * 64**3
    # soft gating: the occupancy heads get gradient through the kept features
    out.feats.sum().backward()
    occ = [p.grad for n, p in gen.named_parameters() if "occupancy" in n and p.grad is not None]
    assert occ and all(torch.isfinite(g).all() for g in occ) and any(g.abs().sum() > 0 for g in occ)


def test_occupancy_output_is_exactly_one_and_passes_the_occupancy_gradient() -> None:
    """output=occupancy: every kept voxel carries 1.0 (as binary data do), and a critic's gradient
    on those values reaches the last occupancy head as the gradient of the probability would."""
    torch.manual_seed(0)
    gen = SparseGenerator(8, 4, [8, 8, 4], voxel_size=16, max_voxels=200, occupancy_threshold=0.3,
                          output="occupancy")
    out = gen(torch.randn(2, 8))
    assert torch.equal(out.feats, torch.ones_like(out.feats))
    weights = torch.randn(out.feats.shape[0])
    (out.feats[:, 0] * weights).sum().backward()
    head = gen.blocks[-1].occupancy
    grads = [p.grad for p in head.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in gen.out.parameters())          # the value head is not used


def _ctx(fam: SparseGANFamily, step: int = 0):
    from medgen_cli.contract.context import TrainContext

    return TrainContext(device=torch.device("cpu"), modules=fam.modules, wrapped=dict(fam.modules),
                        optimizers=fam.optimizers, ema={}, scalers={}, amp_dtype=None, grad_clip=None,
                        global_step=step)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("critic", ["dense", "sparse"])
@pytest.mark.parametrize("gan_type", ["wgan-gp", "vanilla", "lsgan", "hinge"])
def test_one_step_changes_both_players(volumes: Path, backend: str, critic: str, gan_type: str) -> None:
    torch.manual_seed(0)
    cfg = SparseGANConfig(data={"root": str(volumes), "voxel_size": 16},
                          generator={"latent_dim": 8, "init_size": 4, "channels": [8, 8, 4], "max_voxels": 200},
                          discriminator={"kind": critic, "channels": [4, 8]},
                          loss={"gan_type": gan_type, "n_critic": 1, "r1_weight": 10.0 if critic == "dense" else 0.0},
                          sparse={"backend": backend})
    fam = SparseGANFamily(cfg)
    fam.build(torch.device("cpu"))
    ds = fam.train_dataset()
    batch = fam.collate_fn()([ds[0], ds[1]])
    before = {n: {k: v.detach().clone() for k, v in m.state_dict().items()} for n, m in fam.modules.items()}
    metrics = fam.train_step(batch, _ctx(fam))
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    if gan_type == "wgan-gp":
        assert metrics["stats/gp"] > 0 and metrics["loss/gp"] == pytest.approx(10 * metrics["stats/gp"])
    assert metrics["loss/d"] == pytest.approx(sum(v for k, v in metrics.items()
                                                  if k in ("loss/d_real", "loss/d_fake", "loss/gp", "loss/r1")))
    if critic == "dense":
        # step 0 is a lazy-R1 step: γ/2 · r1_interval · E‖∇D‖²
        assert metrics["stats/r1_penalty"] > 0 and metrics["loss/r1"] == pytest.approx(
            5 * cfg.loss.r1_interval * metrics["stats/r1_penalty"])
    for name, module in fam.modules.items():
        changed = [k for k, v in module.state_dict().items() if not torch.equal(v, before[name][k])]
        assert changed, f"{name} did not change"


def test_n_critic_updates_the_generator_every_nth_step(volumes: Path) -> None:
    torch.manual_seed(0)
    cfg = SparseGANConfig(data={"root": str(volumes), "voxel_size": 16},
                          generator={"latent_dim": 8, "init_size": 4, "channels": [8, 8, 4], "max_voxels": 200},
                          discriminator={"channels": [4, 8]}, loss={"n_critic": 3}, sparse={"backend": "torch"})
    fam = SparseGANFamily(cfg)
    fam.build(torch.device("cpu"))
    ds = fam.train_dataset()
    gen = fam.modules["generator"]
    moved = []
    for step in range(6):
        before = [p.detach().clone() for p in gen.parameters()]
        metrics = fam.train_step(fam.collate_fn()([ds[0], ds[1]]), _ctx(fam, step))
        moved.append(any(not torch.equal(a, b) for a, b in zip(before, gen.parameters())))
        assert ("loss/g" in metrics) == (step >= 2)  # G's latest metrics, absent before its first update
    assert moved == [False, False, True, False, False, True]


@pytest.mark.parametrize("backend", BACKENDS)
def test_penalty_reaches_critic_weights(volumes: Path, backend: str) -> None:
    from medgen_cli.families.sparse_gan.losses import gradient_penalty

    torch.manual_seed(0)
    cfg = SparseGANConfig(data={"root": str(volumes), "voxel_size": 16},
                          generator={"latent_dim": 8, "init_size": 4, "channels": [8, 8, 4], "max_voxels": 200},
                          discriminator={"kind": "sparse", "channels": [4, 8]}, loss={"r1_weight": 0.0},
                          sparse={"backend": backend})
    fam = SparseGANFamily(cfg)
    fam.build(torch.device("cpu"))
    dense = torch.zeros(2, 1, 16, 16, 16)
    dense[:, :, 4:9, 5:10, 6:12] = 0.8
    batch = collate_sparse([{"image": d} for d in dense], 0.1, 1)
    from medgen_cli.sparse.tensor import SparseTensor

    real = SparseTensor(batch["coords"], batch["feats"], 1, 2)
    with torch.no_grad():
        fake = fam.modules["generator"](torch.randn(2, 8))
    gp = gradient_penalty(fam._critic_for_penalty(_ctx(fam)), real, fake)
    gp.backward()
    assert torch.isfinite(gp)
    # The penalty is a function of the input gradient, which the conv kernels shape (biases only
    # move ReLU kinks): every kernel must receive gradient, also with MinkowskiEngine.
    kernels = [p.grad for n, p in fam.modules["discriminator"].named_parameters() if n.endswith("kernel")]
    assert len(kernels) == 2 and all(g is not None and float(g.abs().sum()) > 0 for g in kernels)


@pytest.mark.parametrize("backend", BACKENDS)
def test_contract_and_sampling(volumes: Path, tmp_path: Path, backend: str, contract_run: Callable[[str], Path]) -> None:
    from tests.contract import check_family_contract

    from medgen_cli.engine.inference import infer_to_dir
    from medgen_cli.io import load_nifti

    # the torch backend's run is the shared suite's (tests/families/test_contract.py)
    run = (contract_run("sparse-gan") if backend == "torch"
           else check_family_contract("sparse-gan", tiny_overrides(volumes, backend), tmp_path))
    paths = infer_to_dir(run, "sample", {"num": 3, "batch_size": 2, "format": "nifti,points", "threshold": 0.0},
                         tmp_path / "s", checkpoint="latest", device="cpu").written.files
    niftis = sorted(p for p in paths if p.name.endswith(".nii.gz"))
    assert len(niftis) == 3 and len(paths) == 6
    vol, affine = load_nifti(niftis[0])
    assert vol.shape == (16, 16, 16) and np.allclose(affine, AFFINE)
    assert 1 <= int((vol > 0).sum()) <= 300
    again = infer_to_dir(run, "sample", {"num": 1, "batch_size": 2, "format": "nifti"}, tmp_path / "s2",
                         checkpoint="latest", device="cpu").written.files
    assert np.array_equal(load_nifti(again[0])[0], vol)  # same seed, same sample
    frames = infer_to_dir(run, "interpolate", {"frames": 3, "method": "slerp"}, tmp_path / "i", checkpoint="latest",
                          device="cpu").written.files
    assert len(frames) == 3 and all(p.is_file() for p in frames)
    assert (tmp_path / "i" / "preview" / "strip.png").is_file()
    from medgen_cli.errors import MedgenError

    with pytest.raises(MedgenError):
        infer_to_dir(run, "sample", {"num": 3, "format": "nifti,points"}, tmp_path / "s",
                     checkpoint="latest")  # exists, no --overwrite


def test_cli_sample_then_eval_shapes(volumes: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from medgen_cli.cli.app import app
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    cfg = build_config("sparse-gan", overrides=[*tiny_overrides(volumes, "torch"), "trainer.max_steps=2",
                                                f"output_dir={tmp_path / 'runs'}"])
    run = train_from_config(cfg)
    runner = CliRunner()
    res = runner.invoke(app, ["sample", str(run), "--checkpoint", "latest", "--num", "2", "--threshold", "0",
                              "--format", "nifti,points", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    # one folder per format, so each sample is counted once
    assert len(list((tmp_path / "cli" / "points").glob("*.ply"))) == 2
    assert len(list((tmp_path / "cli" / "nifti").glob("*.nii.gz"))) == 2
    res = runner.invoke(app, ["eval", "shapes", str(volumes / "train"), str(tmp_path / "cli" / "points"),
                              "--threshold", "0", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["num_real"] == 4 and out["num_fake"] == 2
    assert math.isfinite(out["mmd_cd"]) and 0.0 <= out["1nna_cd"] <= 1.0


def test_ema_warmup_follows_the_formula() -> None:
    from medgen_cli.contract.family import warmup_ema_fn

    update = warmup_ema_fn(0.999)
    ema, model = [torch.zeros(3)], [torch.ones(3)]
    expected = 0.0
    for n in range(1, 2001):
        update(ema, model, torch.tensor(n))
        d = min(0.999, (1 + n) / (10 + n))
        expected = d * expected + (1 - d)
    assert math.isclose(float(ema[0][0]), expected, rel_tol=1e-5)
    assert expected > 0.8  # a fixed 0.999 would still hold 1 - 0.999**2000 = 0.86; warm-up gets further
    assert expected > 1 - 0.999**2000
    # The trainer takes the family's EMA rule through Family.ema_avg_fn (one hook for every family).
    from medgen_cli.config.build import build_config
    from medgen_cli.families.sparse_gan.family import SparseGANFamily

    for warm, first in ((True, 1 - 2 / 11), (False, 1 - 0.999)):
        fam = SparseGANFamily(build_config("sparse-gan", overrides=[f"trainer.ema.warmup={str(warm).lower()}"]))
        ema = [torch.zeros(3)]
        fam.ema_avg_fn(0.999)(ema, [torch.ones(3)], torch.tensor(1))
        assert math.isclose(float(ema[0][0]), first, rel_tol=1e-5), (warm, float(ema[0][0]))


def test_validation_scores_shapes_and_best_is_closest_to_half(volumes: Path, tmp_path: Path) -> None:
    """Training writes val/shape/* and best.pt by |1-NNA − 0.5|; an empty generator is fully separable."""
    import json

    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.families.sparse_gan.validation import NNA, NNA_GAP, ShapeValidator, sparse_to_points
    from medgen_cli.sparse.tensor import SparseTensor

    x = SparseTensor(torch.tensor([[0, 1, 2, 3], [0, 3, 2, 1], [2, 4, 4, 4]]), torch.ones(3, 1), 1, 3)
    pts = sparse_to_points(x, 8, 100)
    assert np.allclose(pts[0], [[1 / 8, 2 / 8, 3 / 8], [3 / 8, 2 / 8, 1 / 8]])
    assert np.allclose(pts[1], 0) and pts[1].shape == (1, 3)        # empty item → one corner point
    real = [np.random.default_rng(i).uniform(0.3, 0.7, (50, 3)) for i in range(4)]
    val = ShapeValidator(4, 64, 16, lambda seed, n: torch.zeros(n, 2))
    val.real = real

    class Empty(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> SparseTensor:
            return SparseTensor(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 1), 1, len(z))

    m = val(Empty(), [], torch.device("cpu"))
    assert m[NNA] == 1.0 and m[NNA_GAP] == 0.5
    overrides = tiny_overrides(volumes, "torch") + [
        f"output_dir={tmp_path}", "name=v", "trainer.max_steps=4", "trainer.val_every=2", "validation.num_samples=2",
        "validation.num_points=32"]
    run = train_from_config(build_config("sparse-gan", overrides=overrides))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    gaps = [r[f"val/{NNA_GAP}"] for r in rows if f"val/{NNA_GAP}" in r]
    assert len(gaps) == 2 and all(0 <= g <= 0.5 for g in gaps)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True, map_location="cpu")
    assert best["best"]["metric"] == NNA_GAP and best["best"]["mode"] == "min"
    assert math.isclose(best["best"]["value"], min(gaps))


def test_the_ema_generator_equals_its_saved_weights_loaded_afresh() -> None:
    """What training validates and samples (the EMA copy, updated as the trainer does) is what
    best.pt / latest.pt give back: a fresh generator with its state dict draws the same voxels.
    (The EMA averaged the integer seed grid, a buffer left out of the state dict, and truncated
    it — 24·d + 24·(1 − d) became 23 — so training validated, and chose best.pt by, a generator
    nobody could load.)"""
    from torch.optim.swa_utils import AveragedModel

    from medgen_cli.engine.ema import exact_non_float
    from medgen_cli.families.sparse_gan.networks import SparseGenerator
    from medgen_cli.contract.family import warmup_ema_fn

    def make() -> SparseGenerator:
        return SparseGenerator(8, 4, [8, 4, 4], 32, 256, backend="torch", output="occupancy")

    torch.manual_seed(0)
    gen = make()
    ema = AveragedModel(gen, multi_avg_fn=exact_non_float(warmup_ema_fn(0.999)), use_buffers=True)
    for _ in range(60):
        with torch.no_grad():
            for p in gen.parameters():
                p.add_(0.01 * torch.randn_like(p))
        ema.update_parameters(gen)
    fresh = make()
    fresh.load_state_dict(ema.module.state_dict())
    assert torch.equal(ema.module.grid, fresh.grid)
    ema.module.eval(), fresh.eval()
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ema.module(z), fresh(z)
    assert torch.equal(a.coords, b.coords) and torch.equal(a.feats, b.feats)


def test_pixel_norm_is_per_voxel_and_the_same_in_training_and_sampling() -> None:
    from medgen_cli.families.sparse_gan.networks import SparseGenerator
    from medgen_cli.sparse.common import PixelNorm
    from medgen_cli.sparse.tensor import SparseTensor

    f = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, -1.0]])
    x = SparseTensor(torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]]), f, 1, 2)
    out = PixelNorm(2)(x).feats
    hand = torch.tensor([[3 / 12.5**0.5, 4 / 12.5**0.5], [0.0, 2 / 2**0.5], [1.0, -1.0]])
    assert torch.allclose(out, hand, atol=1e-6)
    torch.manual_seed(0)
    gen = SparseGenerator(8, 4, [8, 4, 4], 32, 256, backend="torch", output="occupancy", norm="pixel")
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = gen.train()(z)
        b = gen.eval()(z)
        c = gen(z[:1])  # one sample alone: no statistics over the batch
    assert torch.equal(a.coords, b.coords)
    assert torch.equal(c.coords[:, 1:], a.coords[a.coords[:, 0] == 0, 1:])


def test_level_budgets_shrink_as_a_surface_or_a_solid() -> None:
    """By hand: 4³ seed, three levels, 4,096 voxels, slack 2 — a surface keeps 2·4096/4² = 512 at 8³
    (all of it) and 2·4096/4 = 2048 at 16³; a solid's rule keeps 2·4096/8² = 128 and 1024."""
    assert level_budgets(4, 3, 4096, 2.0, "surface") == [512, 2048, 4096]
    assert level_budgets(4, 3, 4096, 2.0, "volume") == [128, 1024, 4096]
    assert level_budgets(4, 3, 100, 1.0, "surface") == [7, 25, 100]  # ceil(100/16), 100/4
    assert SparseGANConfig().generator.budget_scaling == "surface"


def _shell(side: int, radius: float) -> np.ndarray:
    g = np.indices((side,) * 3).astype(np.float32) - (side - 1) / 2
    r = np.sqrt((g**2).sum(0))
    return (np.abs(r - radius) < 0.75).astype(np.float32)[None]


def test_level_occupancy_counts_cells_like_a_hand_count() -> None:
    from medgen_cli.families.sparse_gan.family import level_occupancy

    vol = np.zeros((1, 8, 8, 8), np.float32)
    vol[0, 0, 0, 0] = vol[0, 1, 1, 1] = 1.0  # one 2³ cell, one 4³ cell
    vol[0, 7, 0, 3] = 0.9  # another 2³ and 4³ cell
    vol[0, 5, 5, 5] = 0.4  # below the threshold
    assert level_occupancy([torch.from_numpy(vol)], 0.5, [2, 4, 8]) == [[2], [2], [3]]
    shell = _shell(32, 12.0)
    counts = level_occupancy([torch.from_numpy(shell)], 0.5, [8, 16, 32])
    cells = shell[0].reshape(8, 4, 8, 4, 8, 4).any(axis=(1, 3, 5)).sum()
    assert counts[0] == [int(cells)] and counts[2] == [int(shell.sum())]


def test_a_budget_the_training_shapes_exceed_is_named_before_training(tmp_path: Path) -> None:
    """Shells of radius 12–14 in 32³ occupy 150–220 cells of the 8³ grid: the solid's rule (128 there with
    4,096 voxels) cuts them and the family says so; the surface rule (512) does not."""
    shells = [torch.from_numpy(_shell(32, r)) for r in (12.0, 13.0, 14.0)]
    notes = {}
    for scaling in ("volume", "surface"):
        fam = SparseGANFamily(SparseGANConfig(data={"voxel_size": 32}, generator={
            "init_size": 4, "channels": [8, 8, 8, 4], "max_voxels": 4096, "budget_scaling": scaling}))
        fam.build(torch.device("cpu"))
        notes[scaling] = fam.training_notes([{"image": s} for s in shells])
    assert len(notes["volume"]) == 1 and "level 8³ keeps at most 128 voxels" in notes["volume"][0]
    assert "3 of 3 training shapes" in notes["volume"][0] and "4³-voxel holes" in notes["volume"][0]
    assert notes["surface"] == []


def test_runs_saved_before_surface_budgets_keep_their_budgets() -> None:
    from medgen_cli.config.migrations import migrate_config

    old, notes = migrate_config({"family": "sparse-gan", "medgen_version": "0.4.0", "generator": {"max_voxels": 64}})
    assert old["generator"]["budget_scaling"] == "volume" and any("budget_scaling" in n for n in notes)
    new, _ = migrate_config({"family": "sparse-gan", "medgen_version": "0.4.1", "generator": {"max_voxels": 64}})
    assert "budget_scaling" not in new["generator"]
