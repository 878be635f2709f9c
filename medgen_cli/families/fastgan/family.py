"""``fastgan``: skip-layer-excitation generator, self-supervised (reconstructing) discriminator,
hinge loss with random margins, DiffAugment, EMA of G."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medgen_cli.contract.context import TrainContext
from medgen_cli.contract.metric_names import shares
from medgen_cli.families.fastgan.config import FastGANConfig
from medgen_cli.families.fastgan.networks import Discriminator, Generator, recon_targets
from medgen_cli.families.gan2d.family import GAN2DFamily
from medgen_cli.families.gan2d.options import GAN2DInterpolateOptions, GAN2DSampleOptions


class FastGANFamily(GAN2DFamily[FastGANConfig, GAN2DSampleOptions, GAN2DInterpolateOptions]):
    """FastGAN for a few hundred 2D images; see :mod:`medgen_cli.families.fastgan.networks`.

    As in the authors' loop, one generator forward serves both updates of a step: D learns from
    the (augmented, detached) fakes, then G from D's verdict on the same augmented fakes.
    """

    name = "fastgan"
    #: D's decoders reconstruct real images only: its forward on fakes leaves them out of the loss.
    ddp_unused_parameters = ("discriminator",)
    #: bf16 under ``trainer.amp: auto`` on CPUs with native bf16: 1.6-1.7x faster steps, the same
    #: FID curve at equal steps (docs/gan2d.md, "bf16 on a CPU").
    cpu_autocast = True
    sample_options = GAN2DSampleOptions
    interpolate_options = GAN2DInterpolateOptions

    def __init__(self, cfg: FastGANConfig) -> None:
        super().__init__(cfg)
        self._fakes: torch.Tensor | None = None

    @property
    def latent_dim(self) -> int:
        return self.cfg.model.z_dim

    def build(self, device: torch.device) -> None:
        m, d, o = self.cfg.model, self.cfg.data, self.cfg.optimizer
        self.device = device
        gen = Generator(m.z_dim, d.resolution, d.channels, m.g_channels, m.max_channels, m.noise).to(device)
        disc = Discriminator(d.resolution, d.channels, m.d_channels, m.max_channels).to(device)
        self.modules = {"generator": gen, "discriminator": disc}
        self.optimizers = {
            "g": torch.optim.Adam(gen.parameters(), lr=o.lr_g, betas=tuple(o.betas)),
            "d": torch.optim.Adam(disc.parameters(), lr=o.lr_d, betas=tuple(o.betas)),
        }

    def _margins(self, logits: torch.Tensor) -> torch.Tensor:
        """Hinge margins drawn from [1 - margin_noise, 1], one per logit."""
        return 1.0 - self.cfg.loss.margin_noise * torch.rand_like(logits)

    def d_step(self, real: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        """One D update: hinge with random margins on augmented real and fake images, plus the L1
        reconstruction of the real images D saw (whole, a random quadrant, the small view)."""
        gen, disc = ctx.net("generator"), ctx.net("discriminator")
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        part = int(torch.randint(4, ()))
        with ctx.autocast():
            self._fakes = self.augment(gen(z))  # kept, with its graph, for this step's G update
            real_aug = self.augment(real)
            d_real, recons = disc(real_aug, part=part)
            d_fake = disc(self._fakes.detach())
            l_real = F.relu(self._margins(d_real) - d_real.float()).mean()
            l_fake = F.relu(self._margins(d_fake) + d_fake.float()).mean()
            targets = recon_targets(real_aug, part)
            l_rec = sum(F.l1_loss(r.float(), t.float()) for r, t in zip(recons, targets))
        loss = l_real + l_fake + self.cfg.loss.recon_weight * l_rec
        ctx.backward(loss, "d")
        grad_norm = ctx.step("d")
        self.augment.observe_real(d_real)
        terms = {"d_real": float(l_real.detach()), "d_fake": float(l_fake.detach()),
                 "recon": self.cfg.loss.recon_weight * float(l_rec.detach())}
        return {"loss/d": terms["d_real"] + terms["d_fake"], "loss/d_real": terms["d_real"],
                "loss/d_fake": terms["d_fake"], "loss/recon": float(l_rec.detach()),
                "d/real": float(d_real.detach().float().mean()), "d/fake": float(d_fake.detach().float().mean()),
                "grad_norm/d": grad_norm, **shares(terms)}

    def g_step(self, n: int, device: torch.device, ctx: TrainContext) -> dict[str, float]:
        """One G update: ``-E[D(aug(G(z)))]`` on the fakes of this step's D update (fresh ones if
        there are none, e.g. right after a resume)."""
        gen, disc = ctx.net("generator"), ctx.net("discriminator")
        fakes, self._fakes = self._fakes, None
        with self._frozen_discriminator(ctx):
            with ctx.autocast():
                if fakes is None:
                    fakes = self.augment(gen(torch.randn(n, self.latent_dim, device=device)))
                l_g = -disc(fakes).float().mean()
            ctx.backward(l_g, "g")
            grad_norm = ctx.step("g")
        return {"loss/g": float(l_g.detach()), "grad_norm/g": grad_norm}
