"""The sparse GAN family: data, one training step (D every step, G every n_critic-th), sampling.

MinkowskiEngine's convolutions have no double backward (their backward is not differentiable:
``autograd.grad(..., create_graph=True)`` through them fails), so the WGAN-GP penalty always runs
the critic's *own weights* through the pure-PyTorch backend (``torch.func.functional_call`` on a
torch-backend twin); the two backends agree to float precision (tests/sparse).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen_cli.contract.context import InferenceContext, TrainContext
from medgen_cli.contract.metric_names import shares
from medgen_cli.families.adversarial import GeneratorMetrics, generator_due
from medgen_cli.families.gan2d.augment import mean_over_ranks
from medgen_cli.contract.capabilities import Interpolating, Sampling
from medgen_cli.contract.family import Family
from medgen_cli.contract.samples import Samples
from medgen_cli.families.sparse_gan import sampling, validation
from medgen_cli.families.sparse_gan.config import SparseGANConfig
from medgen_cli.families.sparse_gan.dense import DenseCritic, DenseGenerator
from medgen_cli.families.sparse_gan.losses import d_loss, dense_gradient_penalty, g_loss, gradient_penalty, r1_penalty
from medgen_cli.families.sparse_gan.networks import SparseDiscriminator, SparseGenerator
from medgen_cli.families.sparse_gan.options import SparseGANInterpolateOptions, SparseGANSampleOptions
from medgen_cli.sparse import resolve_backend_name
from medgen_cli.sparse.common import from_dense, to_dense
from medgen_cli.sparse.tensor import SparseTensor


def _plain(x: Any) -> torch.Tensor:
    """A dataset item's volume as a plain tensor (MONAI's MetaTensor without its metadata)."""
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


def collate_sparse(items: list[dict[str, Any]], threshold: float, min_voxels: int) -> dict[str, Any]:
    """Stack dense volumes and keep the voxels above ``threshold`` (``min_voxels`` floor)."""
    dense = torch.stack([_plain(it["image"]) for it in items]).float()
    x = from_dense(dense[:, :1], threshold, min_voxels)
    return {"coords": x.coords, "feats": x.feats, "batch_size": len(items)}


def level_occupancy(volumes: list[Any], threshold: float, sides: list[int]) -> list[list[int]]:
    """Per grid side in ``sides``: how many of its cells each volume (``[1, S, S, S]``) occupies
    (a cell is occupied when any voxel in it is above ``threshold``)."""
    out: list[list[int]] = [[] for _ in sides]
    for vol in volumes:
        occ = (_plain(vol)[:1].float() > threshold).float()[None]
        for counts, side in zip(out, sides):
            k = occ.shape[-1] // side
            counts.append(int(torch.nn.functional.max_pool3d(occ, k).sum()) if k > 1 else int(occ.sum()))
    return out


class SparseGANFamily(Family[SparseGANConfig], Sampling[SparseGANSampleOptions],
                      Interpolating[SparseGANInterpolateOptions]):
    """``medgen train sparse-gan`` (see :mod:`medgen_cli.families.sparse_gan`)."""

    name = "sparse-gan"
    ema_modules = ("generator",)
    key_metric = validation.NNA_GAP  # |1-NNA − 0.5|: 50% means real and generated are indistinguishable
    key_mode = "min"

    cfg: SparseGANConfig

    def __init__(self, cfg: SparseGANConfig) -> None:
        super().__init__(cfg)
        self.affine: list[list[float]] = np.eye(4).tolist()
        self.last_g = GeneratorMetrics()
        self.backend = "torch"
        self._twin: SparseDiscriminator | None = None
        self.last_r1: float | None = None  # lazy R1's latest value, reported on every step once known
        v = cfg.validation
        self._shapes = validation.ShapeValidator(
            v.num_samples, v.num_points, cfg.data.voxel_size,
            lambda seed, n: sampling.latents(seed, n, cfg.generator.latent_dim)) if v.num_samples else None

    # ---- building ---------------------------------------------------------------------------
    def build(self, device: torch.device) -> None:
        c = self.cfg
        self.backend = resolve_backend_name(c.sparse.backend, device)
        g, d = c.generator, c.discriminator
        gen: torch.nn.Module
        if g.kind == "dense":
            gen = DenseGenerator(g.latent_dim, g.init_size, g.channels, c.data.voxel_size, g.output)
        else:
            gen = SparseGenerator(g.latent_dim, g.init_size, g.channels, c.data.voxel_size, g.max_voxels,
                                  g.occupancy_threshold, g.parent_slack, backend=self.backend, output=g.output,
                                  norm=g.norm, budget_scaling=g.budget_scaling)
        disc: torch.nn.Module
        if d.kind == "dense":
            disc = DenseCritic(d.channels, c.data.voxel_size, d.kernel_size, d.mbstd_group)
        else:
            disc = SparseDiscriminator(d.channels, d.kernel_size, d.pooling, backend=self.backend)
        self.modules = {"generator": gen.to(device), "discriminator": disc.to(device)}
        betas = tuple(c.optimizer.betas)
        self.optimizers = {
            "g": torch.optim.Adam(gen.parameters(), lr=c.optimizer.lr_g, betas=betas),
            "d": torch.optim.Adam(disc.parameters(), lr=c.optimizer.lr_d, betas=betas),
        }

    def _files(self) -> tuple[list[Path], list[Path]]:
        from medgen_cli.data.volumes import list_volume_split

        return list_volume_split(self.cfg.data.root)

    def _dataset(self, files: list[Path], train: bool) -> Any:
        from medgen_cli.data.volumes import make_volume_dataset

        d = self.cfg.data
        return make_volume_dataset(files, (d.voxel_size,) * 3, intensity=d.intensity,
                                   flip=d.flip and train, cache_rate=d.cache_rate, cache_max_gb=d.cache_max_gb)

    def check_data(self) -> None:
        from medgen_cli.data.volumes import check_volume_tree

        check_volume_tree(self.cfg.data.root, 3)

    def train_dataset(self) -> Any:
        train, _ = self._files()
        self._set_affine(train[0])
        return self._dataset(train, train=True)

    def val_dataset(self) -> Any:
        train, val = self._files()
        # Without a val split the shape metrics compare against the first training volumes.
        files = val or train[: self.cfg.validation.num_samples]
        return self._dataset(files, train=False) if files else None

    def training_notes(self, train_set: Any) -> list[str]:
        """One line per generator level whose voxel budget the training shapes exceed (measured on
        up to 64 of them): every cell cut at a coarse level is a hole of its size in the output."""
        gen = self.modules.get("generator")
        if not isinstance(gen, SparseGenerator) or train_set is None or len(train_set) == 0:
            return []
        sides = [gen.init_size * 2**level for level in range(1, len(gen.budgets) + 1)]
        need = level_occupancy([train_set[i]["image"] for i in range(min(len(train_set), 64))],
                               self.cfg.data.threshold, sides)
        notes = []
        for side, budget, counts in zip(sides, gen.budgets, need):
            over = sum(c > budget for c in counts)
            if over:
                hole = self.cfg.data.voxel_size // side
                notes.append(
                    f"generator level {side}³ keeps at most {budget} voxels per sample, but {over} of "
                    f"{len(counts)} training shapes occupy more cells there (mean {sum(counts) / len(counts):.0f}, "
                    f"max {max(counts)}): the cut cells become {hole}³-voxel holes — raise "
                    f"generator.max_voxels or generator.parent_slack"
                    + (" or set generator.budget_scaling=surface" if self.cfg.generator.budget_scaling == "volume" else ""))
        return notes

    def collate_fn(self) -> Any:
        return functools.partial(collate_sparse, threshold=self.cfg.data.threshold,
                                 min_voxels=self.cfg.data.min_voxels)

    def _set_affine(self, path: Path) -> None:
        """The data's voxel-to-world affine, rescaled to the training grid; samples reuse it."""
        import nibabel as nib

        img = nib.load(str(path))
        scale = np.array(img.shape[:3], dtype=np.float64) / self.cfg.data.voxel_size
        aff = np.asarray(img.affine, dtype=np.float64).copy()
        aff[:3, :3] = aff[:3, :3] * scale[None, :]
        self.affine = aff.tolist()

    # ---- training ---------------------------------------------------------------------------
    def _critic_for_penalty(self, ctx: TrainContext) -> Any:
        if self.backend == "torch":
            return ctx.net("discriminator")
        disc = self.modules["discriminator"]
        if self._twin is None:
            d = self.cfg.discriminator
            with torch.random.fork_rng(devices=[]):  # its own init must not shift the training RNG
                self._twin = SparseDiscriminator(d.channels, d.kernel_size, d.pooling, backend="torch").to(ctx.device)
        params = {k.replace(".op.", "."): v for k, v in disc.named_parameters()}
        return functools.partial(torch.func.functional_call, self._twin, params)

    def train_step(self, batch: dict[str, Any], ctx: TrainContext) -> dict[str, float]:
        """One critic update, and one generator update on every ``loss.n_critic``-th step
        (:mod:`medgen_cli.families.adversarial`)."""
        bsz = int(batch["batch_size"])
        real = SparseTensor(batch["coords"], batch["feats"], 1, bsz)
        metrics = self._d_step(real, bsz, ctx)
        if generator_due(ctx.global_step, self.cfg.loss.n_critic):
            self.last_g.update(self._g_step(bsz, ctx))
        metrics.update(self.last_g.latest)
        return metrics

    @property
    def dense_critic(self) -> bool:
        return self.cfg.discriminator.kind == "dense"

    def densify_real(self, real: SparseTensor) -> torch.Tensor:
        """Real shapes on the grid as the critic sees them: 1 per voxel for occupancy output
        (binary, like the generated voxels), else the voxel values."""
        feats = real.feats[:, :1].float()
        if self.cfg.generator.output == "occupancy":
            feats = torch.ones_like(feats)
        return to_dense(real.with_feats(feats), self.cfg.data.voxel_size)

    def _fake(self, gen: Any, z: torch.Tensor) -> Any:
        """What the critic sees of ``gen(z)``: the dense render, or the sparse output."""
        if self.dense_critic:
            return gen(z, dense=True).float()
        out = gen(z)
        return out.with_feats(out.feats.float())

    def _d_step(self, real: SparseTensor, bsz: int, ctx: TrainContext) -> dict[str, float]:
        c = self.cfg
        gen, disc = ctx.net("generator"), ctx.net("discriminator")
        z = torch.randn(bsz, c.generator.latent_dim, device=ctx.device)
        with torch.no_grad(), ctx.autocast():
            fake = self._fake(gen, z)
        real_in: Any = self.densify_real(real) if self.dense_critic else real
        n_fake = self._fake_voxels(fake)
        # Side by side in TensorBoard (train/stats/): a run that loses voxels shows at once.
        metrics = {"stats/fake_voxels": n_fake / bsz, "stats/real_voxels": real.num_voxels / bsz,
                   "stats/voxel_ratio": n_fake / max(real.num_voxels, 1)}
        terms: dict[str, torch.Tensor] = {}
        with ctx.autocast():
            if c.loss.r1_weight > 0 and ctx.global_step % c.loss.r1_interval == 0:
                r1, d_real = r1_penalty(disc, real_in)
                terms["r1"] = 0.5 * c.loss.r1_weight * c.loss.r1_interval * r1
                # The ranks' mean: every rank reports (and a resume restores) one value.
                self.last_r1 = mean_over_ranks(r1.detach())
            else:
                d_real = disc(real_in)
            if self.last_r1 is not None:  # the latest value on every step (lazy R1 computes it every N-th)
                metrics["stats/r1_penalty"] = self.last_r1
            d_real, d_fake = d_real.float(), disc(fake).float()
            terms["d_real"], terms["d_fake"] = d_loss(c.loss.gan_type, d_real, d_fake)
        metrics.update({"d/real": float(d_real.detach().mean()), "d/fake": float(d_fake.detach().mean())})
        if c.loss.gan_type == "wgan-gp":
            gp = (dense_gradient_penalty(disc, real_in, fake) if self.dense_critic
                  else gradient_penalty(self._critic_for_penalty(ctx), real, fake))
            terms["gp"] = c.loss.gradient_penalty_weight * gp
            metrics["stats/gp"] = float(gp.detach())
            metrics["stats/wasserstein"] = float((d_real - d_fake).detach().mean())
        loss_d = sum(terms.values())
        ctx.backward(loss_d, "d")
        values = {k: float(v.detach()) for k, v in terms.items()}
        metrics.update({"loss/d": float(loss_d.detach()), **{f"loss/{k}": v for k, v in values.items()},
                        **shares(values), "grad_norm/d": ctx.step("d")})
        return metrics

    def _fake_voxels(self, fake: Any) -> int:
        """Generated voxels over the batch, as sampling writes them: a sparse output's voxels; a
        sparse generator's render is exactly 0 where no voxel was kept; the dense baseline keeps
        the voxels above 0.5."""
        if not isinstance(fake, torch.Tensor):
            return fake.num_voxels
        return int((fake > 0.5).sum()) if self.cfg.generator.kind == "dense" else int((fake != 0).sum())

    def _g_step(self, bsz: int, ctx: TrainContext) -> dict[str, float]:
        gen, disc = ctx.net("generator"), ctx.net("discriminator")
        z = torch.randn(bsz, self.cfg.generator.latent_dim, device=ctx.device)
        with ctx.autocast():
            loss_g = g_loss(self.cfg.loss.gan_type, disc(self._fake(gen, z)).float())
        ctx.backward(loss_g, "g")
        grad_norm = ctx.step("g")
        ctx.zero_grad("d")  # the G loss also filled the critic's gradients
        return {"loss/g": float(loss_g.detach()), "grad_norm/g": grad_norm}

    @torch.no_grad()
    def validate(self, batches: Any, ctx: TrainContext) -> dict[str, float]:
        """Shape metrics of a fixed sample vs a fixed real subset (see :mod:`.validation`), voxel counts."""
        gen = ctx.eval_module("generator")
        g = torch.Generator(device="cpu").manual_seed(0)
        z = torch.randn(2, self.cfg.generator.latent_dim, generator=g).to(ctx.device)
        fake = gen(z)
        out = {"stats/fake_voxels": fake.num_voxels / 2, "stats/fake_mean": float(fake.feats.mean())}
        if self._shapes is not None:
            out.update(self._shapes(gen, batches, ctx.device))
        return out

    def log_images(self, ctx: TrainContext) -> None:
        vol = sampling.generate_volumes(self, ctx.eval_module("generator"), sampling.latents(0, 1, self.cfg.generator.latent_dim),
                                        ctx.device)[0]
        ctx.add_image("samples/mip", torch.from_numpy(vol.max(axis=0))[None])

    # ---- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"affine": self.affine, "last_g": self.last_g.state_dict(), "last_r1": self.last_r1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.affine = state.get("affine", self.affine)
        self.last_g.load_state_dict(state.get("last_g", {}))
        self.last_r1 = state.get("last_r1", self.last_r1)  # a resumed run reports the same metrics

    # ---- inference --------------------------------------------------------------------------
    sample_options = SparseGANSampleOptions
    interpolate_options = SparseGANInterpolateOptions

    def sample(self, opts: SparseGANSampleOptions, ctx: InferenceContext) -> Samples:
        return sampling.sample(self, opts, ctx)

    def interpolate(self, opts: SparseGANInterpolateOptions, ctx: InferenceContext) -> Samples:
        return sampling.interpolate(self, opts, ctx)
