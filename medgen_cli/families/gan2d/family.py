"""The base of the 2D GAN families: data, augmentation, the D/G update schedule, FID-tracked
validation, sampling.

A subclass builds its networks and optimizers, supplies one D update (:meth:`GAN2DFamily.d_step`)
and one G update (:meth:`GAN2DFamily.g_step`) — :meth:`GAN2DFamily.train_step` runs them on the
schedule every adversarial family shares (:mod:`medgen_cli.families.adversarial`). A generator
with noise beyond z (stylegan2) also says how seeds become images (:meth:`GAN2DFamily.generate`)
and how to interpolate; the defaults serve generators whose only noise is z.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import numpy as np
import torch

from medgen_cli.contract.context import InferenceContext, TrainContext
from medgen_cli.errors import MedgenError
from medgen_cli.families.adversarial import GeneratorMetrics, generator_due
from medgen_cli.contract.capabilities import Interpolating, Sampling
from medgen_cli.contract.family import Family
from medgen_cli.families.gan2d import outputs
from medgen_cli.families.gan2d.augment import Augmenter
from medgen_cli.families.gan2d.fid_tracking import FIDState
from medgen_cli.families.gan2d.options import GAN2DInterpolateOptions, GAN2DSampleOptions
from medgen_cli.contract.samples import Samples, frame_samples, seeded_samples
from medgen_cli.families.latents import interpolation_path

if TYPE_CHECKING:
    from medgen_cli.families.fastgan.config import FastGANConfig
    from medgen_cli.families.sagan.config import SAGANConfig
    from medgen_cli.families.stylegan2.config import StyleGAN2Config

GC = TypeVar("GC", bound="SAGANConfig | StyleGAN2Config | FastGANConfig")
GS = TypeVar("GS", bound=GAN2DSampleOptions)
GI = TypeVar("GI", bound=GAN2DInterpolateOptions)


def ramped_ema(decay: float, rampup: float, batch: int) -> Any:
    """An ``AveragedModel`` ``multi_avg_fn`` whose decay ramps up with the number of updates ``n``:
    ``0.5 ** (batch / min(h, rampup · n · batch))`` with ``h = batch · ln 0.5 / ln decay``."""
    half_life = batch * math.log(0.5) / math.log(decay) if decay > 0 else 0.0

    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        seen = float(n_averaged) * batch
        h = min(half_life, rampup * seen)
        beta = 0.5 ** (batch / h) if h > 0 else 0.0
        if torch.is_floating_point(ema[0]):
            torch._foreach_lerp_(ema, current, 1.0 - beta)
        else:  # integer buffers (BatchNorm's num_batches_tracked): follow the generator
            for e, c in zip(ema, current):
                e.copy_(c)

    return update


class GAN2DFamily(Family[GC], Sampling[GS], Interpolating[GI]):
    """Shared behaviour of ``sagan``, ``stylegan2`` and ``fastgan`` (see the module docstring),
    generic in the subclass's config and options models."""

    ema_modules = ("generator",)
    key_metric = "val/fid"
    key_mode = "min"
    def __init__(self, cfg: GC) -> None:
        super().__init__(cfg)
        self.augment = Augmenter(cfg.augment)
        self.fid = FIDState(cfg.fid, require=cfg.fid.required)
        self.device = torch.device("cpu")
        self.last_g = GeneratorMetrics()

    # ---- subclass hooks ------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        raise NotImplementedError

    @property
    def n_critic(self) -> int:
        """D updates per G update (see :mod:`medgen_cli.families.adversarial`)."""
        return 1

    def d_step(self, real: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        """One discriminator update on the real images ``real`` (in [-1, 1]); its metrics."""
        raise NotImplementedError

    def g_step(self, n: int, device: torch.device, ctx: TrainContext) -> dict[str, float]:
        """One generator update with a batch of ``n`` latents; its metrics."""
        raise NotImplementedError

    def step_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Add metrics derived from one step's D and G metrics (e.g. shares of lazy regularizers)."""
        return metrics

    def generate(self, generator: torch.nn.Module, z: torch.Tensor, truncation: float = 1.0,
                 seeds: list[int] | None = None) -> torch.Tensor:
        """Images in [-1, 1] from latents ``z`` (eval/sampling). ``seeds`` (one per row of ``z``, the
        seeds ``z`` came from) seed any further per-image noise; without them it is fixed. Here, for
        generators whose only noise is z (sagan, fastgan): ``generator(z)``."""
        return generator(z)

    def sample_truncation(self, opts: GS) -> float:
        """The truncation ``opts`` asks for (only StyleGAN2's options have one)."""
        return 1.0

    def interpolate_images(self, generator: torch.nn.Module, z_a: torch.Tensor, z_b: torch.Tensor,
                           opts: GI) -> torch.Tensor:
        """``opts.frames`` frames ``[K, C, H, W]`` in [-1, 1] between the latents ``z_a`` and ``z_b``
        ([1, D]), endpoints included. Here, for generators whose only noise is z: slerp (default)
        or lerp in z; Gaussian latents live near a sphere, so slerp keeps every frame at a typical
        norm."""
        zs = interpolation_path(z_a[0], z_b[0], opts.frames, opts.method)
        return torch.cat([self.generate(generator, chunk) for chunk in zs.split(16)])

    def ema_avg_fn(self, decay: float) -> Any:
        """EMA with StyleGAN2-ADA's ramp-up: half-life ``min(h, rampup · images seen)`` where ``h``
        is the half-life (in images) of ``decay``; without it, after tens of steps the EMA
        generator is still the random initial one and ``best.pt`` would be an untrained model."""
        rampup = self.cfg.trainer.ema.rampup
        if rampup is None or decay >= 1.0:
            return super().ema_avg_fn(decay)
        return ramped_ema(decay, rampup, self.cfg.trainer.batch_size)

    # ---- data ------------------------------------------------------------------------------------
    def _dataset(self, flip: bool) -> Any:
        from medgen_cli.data.images import ImageFolderDataset

        data = self.cfg.data
        if data.root is None:
            raise MedgenError("data.root is not set", "pass --set data.root=FOLDER_OF_IMAGES")
        if not Path(data.root).is_dir():
            raise MedgenError(f"data.root {data.root} is not a folder", "point data.root at a folder of images")
        ds = ImageFolderDataset(data.root, data.resolution, channels=data.channels, flip=flip)
        if len(ds) == 0:
            raise MedgenError(f"no images found in {data.root}", "png, jpg, jpeg, tif, tiff or bmp files are read")
        return ds

    def check_data(self) -> None:
        """Every image readable and finite before the run folder exists (not at step 3)."""
        from medgen_cli.data.images import check_image_files, list_images

        data = self.cfg.data
        if data.root is None:
            raise MedgenError("data.root is not set", "pass --set data.root=FOLDER_OF_IMAGES")
        if not Path(data.root).is_dir():
            raise MedgenError(f"data.root {data.root} is not a folder", "point data.root at a folder of images")
        check_image_files(list_images(data.root))

    def train_dataset(self) -> Any:
        return self._dataset(self.cfg.data.flip)

    def _real_images(self) -> torch.Tensor:
        """Up to ``fid.num_real`` training images (evenly spaced, unflipped) for the FID reference."""
        ds = self._dataset(flip=False)
        n = min(len(ds), self.cfg.fid.num_real)
        idx = np.linspace(0, len(ds) - 1, n).round().astype(int)
        return torch.stack([ds[int(i)] for i in idx])

    # ---- training ---------------------------------------------------------------------------------
    def train_step(self, batch: Any, ctx: TrainContext) -> dict[str, float]:
        """One D update, and one G update on every ``n_critic``-th step; G's metrics are those of
        its latest update."""
        real = self._real(batch)
        out = self.d_step(real, ctx)
        if generator_due(ctx.global_step, self.n_critic):
            self.last_g.update(self.g_step(real.shape[0], real.device, ctx))
        out.update(self.last_g.latest)
        out.update(self.augment.metrics())
        return self.step_metrics(out)

    @staticmethod
    def _real(batch: Any) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return x.float() * 2.0 - 1.0

    @staticmethod
    def _requires_grad(module: torch.nn.Module, flag: bool) -> None:
        for p in module.parameters():
            p.requires_grad_(flag)

    @contextlib.contextmanager
    def _frozen_discriminator(self, ctx: TrainContext) -> Iterator[None]:
        """During the G update D gets no gradients: its weights are frozen (saves the backward
        into D) in a single process; under DDP, whose reducer expects every parameter's gradient,
        D's gradients are computed and then dropped."""
        disc = self.modules["discriminator"]
        freeze = not ctx.distributed
        if freeze:
            self._requires_grad(disc, False)
        try:
            yield
        finally:
            if freeze:
                self._requires_grad(disc, True)
            ctx.zero_grad("d")

    # ---- validation: FID on a schedule -------------------------------------------------------------
    def prepare(self, ctx: TrainContext) -> None:
        """With ``fid.required`` (``--require-fid``), load the Inception weights now: fail before
        training, not at the first evaluation."""
        if self.cfg.fid.required:
            if not self.cfg.fid.enabled:
                raise MedgenError("fid.required (--require-fid) is set but fid.enabled is false", "remove one of them")
            self.fid.build(self._real_images, ctx.device, self.cfg.data.root)

    def validate(self, batches: Any, ctx: TrainContext) -> dict[str, float]:
        """FID/KID of the EMA generator vs the training set when the step is on the FID schedule;
        ``{}`` otherwise (or when FID is off / its weights are missing)."""
        if not self.fid.due(ctx.global_step) or not self.fid.build(self._real_images, ctx.device,
                                                                   self.cfg.data.root):
            return {}
        # The seeds `medgen sample --seed fid.seed` uses, so eval fid of those samples agrees.
        fakes = self._generate_many(ctx.eval_module("generator"), self.cfg.fid.num_fake, seed=self.cfg.fid.seed,
                                    batch_size=self.cfg.fid.batch_size, device=ctx.device)
        return self.fid.evaluate(fakes, ctx.global_step)

    @torch.no_grad()
    def _generate_many(self, generator: torch.nn.Module, n: int, seed: int, batch_size: int,
                       device: torch.device, truncation: float = 1.0,
                       track: Callable[[Iterator[Any], int, str], Iterator[Any]] | None = None) -> torch.Tensor:
        """``n`` images in [0, 1] on the CPU, image ``i`` from seed ``seed + i`` alone (its z and any
        further noise), ``batch_size`` at a time; ``track`` wraps the batches in a progress bar."""
        starts: Iterator[int] = iter(range(seed, seed + n, batch_size))
        if track is not None:
            starts = track(starts, -(-n // batch_size), "sampling")
        chunks = []
        for first in starts:
            seeds = list(range(first, min(first + batch_size, seed + n)))
            z = outputs.seed_latents(first, len(seeds), self.latent_dim).to(device)
            chunks.append(outputs.to_unit(self.generate(generator, z, truncation, seeds=seeds)).cpu())
        return torch.cat(chunks)

    def log_images(self, ctx: TrainContext) -> None:
        """A grid of 16 samples of the EMA generator from fixed seeds."""
        from torchvision.utils import make_grid

        gen = ctx.eval_module("generator")
        was_training = gen.training
        gen.eval()  # BN statistics, spectral-norm vectors and w_avg must not move while logging
        try:
            imgs = self._generate_many(gen, 16, seed=0, batch_size=16, device=ctx.device)
        finally:
            gen.train(was_training)
        ctx.add_image("samples", make_grid(imgs, nrow=4, padding=2))

    # ---- state that must survive a resume ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"augment": self.augment.state_dict(), "fid": self.fid.state_dict(),
                "last_g": self.last_g.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.augment.load_state_dict(state.get("augment", {}))
        self.fid.load_state_dict(state.get("fid", {}))
        self.last_g.load_state_dict(state.get("last_g", {}))

    # ---- inference -----------------------------------------------------------------------------------
    def sample(self, opts: GS, ctx: InferenceContext) -> Samples:
        """Images ``[N, C, H, W]`` in [0, 1]; sample ``i`` comes from seed ``opts.seed + i``."""
        images = self._generate_many(ctx.eval_module("generator"), opts.num, opts.seed, opts.batch_size, ctx.device,
                                     self.sample_truncation(opts), track=ctx.track)
        return seeded_samples(images.numpy(), opts.seed, value_range=(0.0, 1.0))

    def interpolate(self, opts: GI, ctx: InferenceContext) -> Samples:
        """Frames between the latents of ``seed_a`` and ``seed_b`` (the subclass picks the path)."""
        z_a = outputs.seed_latents(opts.seed_a, 1, self.latent_dim).to(ctx.device)
        z_b = outputs.seed_latents(opts.seed_b, 1, self.latent_dim).to(ctx.device)
        frames = self.interpolate_images(ctx.eval_module("generator"), z_a, z_b, opts)
        return frame_samples(outputs.to_unit(frames).cpu().numpy(), value_range=(0.0, 1.0))
