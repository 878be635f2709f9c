"""``stylegan2``: logistic GAN loss, lazy R1 and path-length regularization, style mixing,
EMA of G by half-life, truncation at sampling, ADA/DiffAugment before D."""

from __future__ import annotations

import math
from typing import Any

import torch

from medgen_cli.families.latents import interpolation_path
from medgen_cli.contract.context import TrainContext
from medgen_cli.contract.metric_names import shares
from medgen_cli.families.gan2d import losses
from medgen_cli.families.gan2d.augment import mean_over_ranks, process_count
from medgen_cli.families.gan2d.family import GAN2DFamily
from medgen_cli.families.stylegan2.config import StyleGAN2Config
from medgen_cli.families.stylegan2.networks import Discriminator, Generator
from medgen_cli.families.stylegan2.options import StyleGAN2InterpolateOptions, StyleGAN2SampleOptions


class StyleGAN2Family(GAN2DFamily[StyleGAN2Config, StyleGAN2SampleOptions, StyleGAN2InterpolateOptions]):
    """StyleGAN2 for small 2D image sets; see :class:`~medgen_cli.families.stylegan2.config.StyleGAN2Config`."""

    name = "stylegan2"
    sample_options = StyleGAN2SampleOptions
    interpolate_options = StyleGAN2InterpolateOptions

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__(cfg)
        self.pl_mean = 0.0
        # Last values of the lazy regularizers, reported on every step (not only when computed)
        # so that every log line carries them; saved so a resume reports the same.
        self.last_reg: dict[str, float] = {"stats/r1_penalty": 0.0, "loss/r1": 0.0, "stats/pl_penalty": 0.0,
                                           "loss/pl": 0.0, "stats/pl_length": 0.0}

    @property
    def latent_dim(self) -> int:
        return self.cfg.model.z_dim

    @property
    def r1_gamma(self) -> float:
        """γ from the config, or StyleGAN2-ADA's auto value 0.0002·res²/batch (the global batch under DDP)."""
        g = self.cfg.loss.r1_gamma
        return g if g is not None else (0.0002 * self.cfg.data.resolution ** 2
                                       / (self.cfg.trainer.batch_size * process_count()))

    def ema_decay(self, configured: float) -> float:
        """Per-step decay from the half-life in images: ``0.5 ** (batch / half_life)``, ``batch``
        the global batch (all DDP ranks' images of one step)."""
        half_life = self.cfg.model.ema_halflife_images
        if half_life is None:
            return configured
        return 0.5 ** (self.cfg.trainer.batch_size * process_count() / half_life)

    def build(self, device: torch.device) -> None:
        m, d, o, loss = self.cfg.model, self.cfg.data, self.cfg.optimizer, self.cfg.loss
        self.device = device
        gen = Generator(m.z_dim, m.w_dim, d.resolution, d.channels, m.mapping_layers, m.mapping_lr_mul,
                        m.w_avg_beta, m.channel_base, m.channel_max).to(device)
        disc = Discriminator(d.resolution, d.channels, m.channel_base, m.channel_max, m.mbstd_group).to(device)
        self.modules = {"generator": gen, "discriminator": disc}
        self.optimizers = {
            "g": self._adam(gen, o.lr_g, o.betas, loss.pl_interval if loss.pl_weight > 0 else None),
            "d": self._adam(disc, o.lr_d, o.betas, loss.r1_interval if self.r1_gamma > 0 else None),
        }

    @staticmethod
    def _adam(module: torch.nn.Module, lr: float, betas: tuple[float, float], interval: int | None) -> torch.optim.Adam:
        # Lazy regularization: the optimizer sees the regularizer every `interval` steps scaled
        # by `interval`; StyleGAN2 compensates by scaling lr and the betas by interval/(interval+1).
        ratio = interval / (interval + 1) if interval else 1.0
        return torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio))

    def _mixing(self, n: int, device: torch.device) -> dict[str, Any]:
        """Style mixing: with probability ``style_mixing`` a second z takes over from a random layer."""
        num_ws = self.modules["generator"].num_ws
        if self.cfg.loss.style_mixing <= 0 or float(torch.rand(())) >= self.cfg.loss.style_mixing:
            return {}
        cutoff = int(torch.randint(1, num_ws, ()))
        return {"mix_z": torch.randn(n, self.latent_dim, device=device), "mix_cutoff": cutoff}

    def step_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """The lazy regularizers' latest values and every term's share (regularizers per step)."""
        out = {**metrics, **self.last_reg}
        out.update(shares({"d_real": out["loss/d_real"], "d_fake": out["loss/d_fake"],
                           "r1": self.last_reg["loss/r1"] / self.cfg.loss.r1_interval}))
        out.update(shares({"g_adv": out["loss/g"], "pl": self.last_reg["loss/pl"] / self.cfg.loss.pl_interval}))
        return out

    def d_step(self, real: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        """One D update (with lazy R1 every ``r1_interval`` steps)."""
        gen, disc = ctx.net("generator"), ctx.net("discriminator")
        n = real.shape[0]
        do_r1 = self.r1_gamma > 0 and ctx.global_step % self.cfg.loss.r1_interval == 0
        z = torch.randn(n, self.latent_dim, device=real.device)
        mix = self._mixing(n, real.device)
        real_in = real.detach().requires_grad_(do_r1)
        with ctx.autocast():
            with torch.no_grad():
                fake = gen(z, **mix)
            d_real = disc(self.augment(real_in))
            d_fake = disc(self.augment(fake))
            l_real, l_fake = losses.d_logistic(d_real.float(), d_fake.float())
        loss = l_real + l_fake
        if do_r1:
            # R1 through the augmentation, on the same forward pass (as StyleGAN2-ADA does).
            penalty = losses.r1_penalty(d_real, real_in)
            l_r1 = penalty * (self.r1_gamma / 2) * self.cfg.loss.r1_interval
            loss = loss + l_r1
            self.last_reg.update({"stats/r1_penalty": float(penalty.detach()), "loss/r1": float(l_r1.detach())})
        ctx.backward(loss, "d")
        grad_norm = ctx.step("d")
        self.augment.observe_real(d_real)
        lr_, lf_ = float(l_real.detach()), float(l_fake.detach())
        return {"loss/d": lr_ + lf_, "loss/d_real": lr_, "loss/d_fake": lf_,
                "d/real": float(d_real.detach().float().mean()), "d/fake": float(d_fake.detach().float().mean()),
                "grad_norm/d": grad_norm}

    def g_step(self, n: int, device: torch.device, ctx: TrainContext) -> dict[str, float]:
        """One G update (with lazy path-length regularization every ``pl_interval`` steps)."""
        gen, disc = ctx.net("generator"), ctx.net("discriminator")
        loss_cfg = self.cfg.loss
        with self._frozen_discriminator(ctx):
            z = torch.randn(n, self.latent_dim, device=device)
            with ctx.autocast():
                d_gen = disc(self.augment(gen(z, **self._mixing(n, device))))
                l_g = losses.g_logistic(d_gen.float())
            loss = l_g
            if loss_cfg.pl_weight > 0 and ctx.global_step % loss_cfg.pl_interval == 0:
                loss = loss + self._path_length(gen, max(1, n // loss_cfg.pl_batch_shrink), device)
            ctx.backward(loss, "g")
            grad_norm = ctx.step("g")
        return {"loss/g": float(l_g.detach()), "grad_norm/g": grad_norm}

    def _path_length(self, gen: torch.nn.Module, n: int, device: torch.device) -> torch.Tensor:
        """Weighted, interval-scaled path-length penalty; updates the running mean length."""
        loss_cfg = self.cfg.loss
        z = torch.randn(n, self.latent_dim, device=device)
        images, ws = gen(z, return_ws=True, **self._mixing(n, device))  # fp32: second-order grads
        lengths = losses.path_lengths(images, ws)
        # The mean over every rank's lengths (the global batch's), so all ranks hold one pl_mean.
        batch_mean = mean_over_ranks(lengths.detach().mean())
        self.pl_mean = self.pl_mean + (batch_mean - self.pl_mean) * loss_cfg.pl_decay
        penalty = (lengths - self.pl_mean).square().mean()
        weighted = penalty * loss_cfg.pl_weight * loss_cfg.pl_interval
        self.last_reg.update({"stats/pl_penalty": float(penalty.detach()), "loss/pl": float(weighted.detach()),
                              "stats/pl_length": float(lengths.detach().mean())})
        return weighted

    # ---- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pl_mean": self.pl_mean, "last_reg": dict(self.last_reg)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pl_mean = float(state.get("pl_mean", 0.0))
        # Only the current names: a checkpoint from before the metric-name scheme has others.
        self.last_reg.update({k: float(v) for k, v in state.get("last_reg", {}).items() if k in self.last_reg})

    # ---- inference -------------------------------------------------------------------------------
    def generate(self, generator: torch.nn.Module, z: torch.Tensor, truncation: float = 1.0,
                 seeds: list[int] | None = None) -> torch.Tensor:
        """Per-image noise seeded like z when ``seeds`` are given (as in training, where every image
        gets fresh noise; with one fixed map every sample would share the same fine detail, e.g.
        specks at the same places); the fixed ``const`` maps otherwise."""
        if seeds is None:
            return generator(z, truncation=truncation, noise_mode="const")
        return generator(z, truncation=truncation, noises=generator.synthesis.seeded_noise(seeds, z.device))

    def sample_truncation(self, opts: StyleGAN2SampleOptions) -> float:
        return opts.truncation

    def interpolate_images(self, generator: torch.nn.Module, z_a: torch.Tensor, z_b: torch.Tensor,
                           opts: StyleGAN2InterpolateOptions) -> torch.Tensor:
        """Linear interpolation in W (after truncation): W is not Gaussian, and StyleGAN's
        perceptual path length shows it is the space where straight lines look smooth. The noise
        maps turn from seed_a's to seed_b's along a great circle (cos/sin weights keep them unit
        Gaussian), so the end frames are exactly ``medgen sample``'s images of the two seeds."""
        w_a = generator.mapping(z_a, opts.truncation)[0]
        w_b = generator.mapping(z_b, opts.truncation)[0]
        ws = interpolation_path(w_a, w_b, opts.frames, "lerp").unsqueeze(1).repeat(1, generator.num_ws, 1)
        syn = generator.synthesis
        noise_a, noise_b = syn.seeded_noise([opts.seed_a], z_a.device), syn.seeded_noise([opts.seed_b], z_a.device)
        angle = torch.linspace(0.0, math.pi / 2, opts.frames, device=z_a.device).view(-1, 1, 1, 1)
        noises = [torch.cos(angle) * a + torch.sin(angle) * b for a, b in zip(noise_a, noise_b)]
        frames = []
        for start in range(0, opts.frames, 16):
            frames.append(syn(ws[start:start + 16], noises=[n[start:start + 16] for n in noises]))
        return torch.cat(frames)
