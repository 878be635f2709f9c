"""sparse-gan's dense side: the straight-through render and the penalties against hand computations,
the minibatch-std channel, the old-run migration, and a learnability test on two classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen_cli.families.sparse_gan.dense import DenseCritic, MinibatchStd, render_dense
from medgen_cli.families.sparse_gan.losses import dense_gradient_penalty, r1_penalty
from medgen_cli.families.sparse_gan.networks import SparseGenerator
from medgen_cli.sparse.tensor import SparseTensor


def _cands(size: int) -> tuple[SparseTensor, list[SparseTensor], torch.Tensor, torch.Tensor]:
    """Output voxels at stride 1 and candidates at strides 4 (2 of them) and 1 (3 of them)."""
    coarse = SparseTensor(torch.tensor([[0, 0, 0, 0], [0, 4, 0, 4]]), torch.tensor([[0.7], [0.2]]), 4, 1)
    fine = SparseTensor(torch.tensor([[0, 1, 2, 3], [0, 5, 1, 6], [0, 7, 7, 7]]), torch.tensor([[0.9], [0.6], [0.1]]), 1, 1)
    p_coarse = coarse.feats.clone().requires_grad_(True)
    p_fine = fine.feats.clone().requires_grad_(True)
    out = SparseTensor(fine.coords[:2], torch.ones(2, 1), 1, 1)
    return out, [coarse.with_feats(p_coarse), fine.with_feats(p_fine)], p_coarse, p_fine


def test_render_forward_is_the_output_and_backward_the_mean_gradient_of_covered_voxels() -> None:
    size = 8
    out, cands, p_coarse, p_fine = _cands(size)
    dense = render_dense(out, cands, size, detach_output=True)
    # Forward: exactly the output voxels (1 where kept, 0 elsewhere), untouched by the ST terms.
    expected = np.zeros((size, size, size), np.float32)
    expected[1, 2, 3] = expected[5, 1, 6] = 1.0
    assert np.array_equal(dense[0, 0].detach().numpy(), expected)
    # Backward of sum(W · render): a stride-4 candidate gets the mean of W over its 4³ voxels,
    # a stride-1 candidate W at its voxel (computed by hand with numpy).
    w = torch.arange(size**3, dtype=torch.float32).reshape(1, 1, size, size, size) / 100.0
    (dense * w).sum().backward()
    wn = w[0, 0].numpy()
    assert p_coarse.grad[0, 0].item() == pytest.approx(wn[0:4, 0:4, 0:4].mean(), rel=1e-6)
    assert p_coarse.grad[1, 0].item() == pytest.approx(wn[4:8, 0:4, 4:8].mean(), rel=1e-6)
    assert [g.item() for g in p_fine.grad[:, 0]] == pytest.approx([wn[1, 2, 3], wn[5, 1, 6], wn[7, 7, 7]], rel=1e-6)


def test_generator_render_gives_every_level_a_gradient_even_for_dropped_children() -> None:
    torch.manual_seed(0)
    gen = SparseGenerator(8, 2, [8, 8, 4], 8, max_voxels=20, occupancy_threshold=0.5, output="occupancy")
    dense = gen.render(torch.randn(2, 8))
    assert set(torch.unique(dense.detach()).tolist()) <= {0.0, 1.0}
    assert int(dense.sum()) == gen.last_stats["kept"][-1]
    probs = [c.feats for c in gen.last_candidates]
    for p in probs:
        p.retain_grad()
    dense.sum().backward()
    last = gen.last_candidates[-1]
    dropped = last.feats[:, 0] <= 0.5
    assert bool(dropped.any())
    # A dropped child is absent from the output, yet its probability receives the gradient.
    assert bool((probs[-1].grad[dropped] != 0).all())
    assert all(bool((p.grad != 0).any()) for p in probs)


def test_penalties_of_a_linear_critic_equal_their_closed_forms() -> None:
    torch.manual_seed(0)
    w = torch.randn(1, 1, 4, 4, 4)

    def critic(x: torch.Tensor) -> torch.Tensor:  # D(x) = <w, x>: ∇D = w at every voxel, present or not
        return (x * w).flatten(1).sum(dim=1)

    real = (torch.rand(3, 1, 4, 4, 4) > 0.7).float()
    fake = torch.zeros(3, 1, 4, 4, 4)  # empty volumes: a sparse critic would see no voxel at all
    norm = float(w.norm())
    assert float(dense_gradient_penalty(critic, real, fake)) == pytest.approx((norm - 1) ** 2, rel=1e-5)
    r1, scores = r1_penalty(critic, real)
    assert float(r1) == pytest.approx(norm**2, rel=1e-5)
    assert torch.allclose(scores, critic(real))


def test_minibatch_std_sees_a_batch_without_variety() -> None:
    same = torch.rand(1, 3, 2, 2, 2).repeat(4, 1, 1, 1, 1)
    varied = torch.rand(4, 3, 2, 2, 2)
    layer = MinibatchStd(4)
    assert float(layer(same)[:, -1].max()) < 1e-3
    assert float(layer(varied)[:, -1].min()) > 0.05
    critic = DenseCritic([4, 8], 8, mbstd_group=4)
    assert critic(torch.rand(4, 1, 8, 8, 8)).shape == (4,)


def test_old_sparse_gan_runs_keep_their_sparse_critic() -> None:
    from medgen_cli.config.migrations import migrate_config
    from medgen_cli.families.sparse_gan.config import SparseGANConfig

    old = SparseGANConfig().model_dump(mode="json")
    del old["discriminator"]["kind"], old["discriminator"]["mbstd_group"], old["loss"]["r1_weight"]
    migrated, notes = migrate_config({"medgen_version": "0.2.0", **old})
    assert SparseGANConfig(**migrated).discriminator.kind == "sparse"
    assert SparseGANConfig(**migrated).loss.r1_weight == 0.0
    assert any("discriminator.kind" in n for n in notes)
    assert SparseGANConfig().discriminator.kind == "dense"  # new runs: the measured default


# ---- learnability --------------------------------------------------------------------------------
SIZE = 16


def _two_classes() -> list[np.ndarray]:
    """A bar along x in the lower half and a bar along y in the upper half (binary, 16³)."""
    a = np.zeros((SIZE,) * 3, np.float32)
    a[2:14, 3:7, 3:7] = 1
    b = np.zeros((SIZE,) * 3, np.float32)
    b[9:13, 2:14, 9:13] = 1
    return [a, b]


def classify(vols: np.ndarray, templates: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per volume: the template of highest IoU and that IoU."""
    ious = np.array([[(v & t).sum() / max((v | t).sum(), 1) for t in (tt > 0.5 for tt in templates)]
                     for v in vols > 0.5])
    return ious.argmax(axis=1), ious.max(axis=1)


def learned_both_classes(vols: np.ndarray, templates: list[np.ndarray]) -> bool:
    """The test's criterion: every class drawn by ≥ 20% of the samples, at IoU ≥ 0.5 on average."""
    cls, iou = classify(vols, templates)
    shares = np.bincount(cls, minlength=len(templates)) / len(cls)
    return bool(shares.min() >= 0.2 and iou.mean() >= 0.5)


def test_criterion_rejects_a_collapsed_or_z_blind_generator() -> None:
    a, b = _two_classes()
    assert learned_both_classes(np.stack([a, b] * 8), [a, b])
    assert not learned_both_classes(np.stack([a] * 16), [a, b])                 # one class (or ignores z)
    assert not learned_both_classes(np.stack([np.maximum(a, b)] * 16), [a, b])  # a blend of both


@pytest.mark.timeout(300)
def test_sparse_gan_learns_two_classes(tmp_path) -> None:
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.families.sparse_gan.sampling import generate_volumes, latents
    from medgen_cli.engine.run_loading import load_run
    from medgen_cli.io import save_nifti

    templates = _two_classes()
    for split, n in (("train", 16), ("val", 4)):
        for i in range(n):
            save_nifti(templates[i % 2], tmp_path / "data" / split / f"s{i:02d}.nii.gz", affine=np.eye(4))
    cfg = build_config("sparse-gan", overrides=[
        f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / 'runs'}", "name=two", "data.voxel_size=16",
        "data.threshold=0.5", "data.min_voxels=1", "trainer.device=cpu", "trainer.max_steps=300",
        "trainer.batch_size=8", "trainer.log_every=50", "trainer.val_every=100000", "trainer.ckpt_every=300",
        "trainer.image_every=100000", "trainer.ema.decay=0.99", "sparse.backend=torch",
        "generator.latent_dim=16", "generator.init_size=4", "generator.channels=[32,16,8]",
        "generator.max_voxels=512", "generator.output=occupancy", "discriminator.channels=[16,32]",
        "loss.n_critic=1", "optimizer.lr_g=0.001", "optimizer.lr_d=0.001", "validation.num_samples=0"])
    run = train_from_config(cfg)
    loaded = load_run(run, checkpoint="latest", device="cpu")
    vols = generate_volumes(loaded.family, loaded.ctx.eval_module("generator"), latents(0, 32, 16), "cpu")
    cls, iou = classify(vols, templates)
    assert learned_both_classes(vols, templates), (np.bincount(cls, minlength=2), iou.mean())


def test_lazy_r1_runs_every_nth_critic_step_with_weight_times_n(tmp_path) -> None:
    """``loss.r1_interval=N``: the R1 term is in the critic loss on steps 0, N, 2N… only, and there
    it is N·γ/2·E‖∇D‖² (``stats/r1_penalty`` is that E‖∇D‖², reported on every step)."""
    import json

    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.io import save_nifti

    a, b = _two_classes()
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            save_nifti((a, b)[i % 2], tmp_path / "data" / split / f"s{i}.nii.gz", affine=np.eye(4))
    cfg = build_config("sparse-gan", overrides=[
        f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / 'runs'}", "name=lazy", "data.voxel_size=16",
        "data.min_voxels=1", "trainer.device=cpu", "trainer.max_steps=6", "trainer.batch_size=2",
        "trainer.log_every=1", "trainer.val_every=100000", "trainer.ckpt_every=100000", "trainer.image_every=100000",
        "sparse.backend=torch", "generator.latent_dim=8", "generator.init_size=4", "generator.channels=[8,4,4]",
        "generator.max_voxels=256", "discriminator.channels=[4,8]", "loss.r1_interval=3", "loss.r1_weight=10",
        "validation.num_samples=0"])
    run = train_from_config(cfg)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "train/loss/d" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for r in rows:
        if (r["step"] - 1) % 3 == 0:
            assert r["train/loss/r1"] == pytest.approx(3 * 0.5 * 10 * r["train/stats/r1_penalty"], rel=1e-5)
        else:
            assert "train/loss/r1" not in r
            assert r["train/stats/r1_penalty"] > 0  # the last computed value, carried


def test_runs_before_lazy_r1_keep_r1_on_every_step() -> None:
    from medgen_cli.config.migrations import migrate_config
    from medgen_cli.families.sparse_gan.config import SparseGANConfig

    old = SparseGANConfig().model_dump(mode="json")
    del old["loss"]["r1_interval"]
    migrated, _ = migrate_config({"medgen_version": "0.3.0", **old})
    assert SparseGANConfig(**migrated).loss.r1_interval == 1
    assert SparseGANConfig().loss.r1_interval == 4
