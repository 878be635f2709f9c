"""``sagan``: self-attention GAN with spectral norm, hinge/BCE loss, TTUR and EMA of G."""

from __future__ import annotations

import torch

from medgen_cli.contract.context import TrainContext
from medgen_cli.contract.metric_names import shares
from medgen_cli.errors import MedgenError
from medgen_cli.families.gan2d import losses
from medgen_cli.families.gan2d.family import GAN2DFamily
from medgen_cli.families.gan2d.options import GAN2DInterpolateOptions, GAN2DSampleOptions
from medgen_cli.families.sagan.config import SAGANConfig
from medgen_cli.families.sagan.networks import Discriminator, Generator


class SAGANFamily(GAN2DFamily[SAGANConfig, GAN2DSampleOptions, GAN2DInterpolateOptions]):
    """SAGAN for small 2D image sets; see :class:`~medgen_cli.families.sagan.config.SAGANConfig`."""

    name = "sagan"
    sample_options = GAN2DSampleOptions
    interpolate_options = GAN2DInterpolateOptions

    def __init__(self, cfg: SAGANConfig) -> None:
        super().__init__(cfg)

    @property
    def latent_dim(self) -> int:
        return self.cfg.model.latent_dim

    def build(self, device: torch.device) -> None:
        m, d, o = self.cfg.model, self.cfg.data, self.cfg.optimizer
        attn = m.attention_resolution
        if attn is not None and not (8 <= attn <= d.resolution):
            raise MedgenError(f"model.attention_resolution={attn} is outside 8..{d.resolution}",
                              "use a feature-map size between 8 and data.resolution, or null")
        self.device = device
        gen = Generator(m.latent_dim, d.resolution, d.channels, m.base_channels, m.max_channels, attn).to(device)
        disc = Discriminator(d.resolution, d.channels, m.base_channels, m.max_channels, attn, m.d_slope).to(device)
        self.modules = {"generator": gen, "discriminator": disc}
        self.optimizers = {
            "g": torch.optim.Adam(gen.parameters(), lr=o.lr_g, betas=tuple(o.betas)),
            "d": torch.optim.Adam(disc.parameters(), lr=o.lr_d, betas=tuple(o.betas)),
        }

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.loss.type == "hinge":
            return losses.d_hinge(real.float(), fake.float())
        return losses.d_bce(real.float(), fake.float(), real_label=self.cfg.loss.real_label)

    def _g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return losses.g_hinge(fake.float()) if self.cfg.loss.type == "hinge" else losses.g_bce(fake.float())

    @property
    def n_critic(self) -> int:
        return self.cfg.loss.n_critic

    def d_step(self, real: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        """One D update on augmented real and fake images."""
        gen, disc = ctx.net("generator"), ctx.net("discriminator")
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        with ctx.autocast():
            with torch.no_grad():
                fake = gen(z)
            d_real = disc(self.augment(real))
            d_fake = disc(self.augment(fake.detach()))
            l_real, l_fake = self._d_loss(d_real, d_fake)
        ctx.backward(l_real + l_fake, "d")
        grad_norm = ctx.step("d")
        self.augment.observe_real(d_real)
        terms = {"d_real": float(l_real.detach()), "d_fake": float(l_fake.detach())}
        return {"loss/d": terms["d_real"] + terms["d_fake"], "loss/d_real": terms["d_real"],
                "loss/d_fake": terms["d_fake"], "d/real": float(d_real.detach().float().mean()),
                "d/fake": float(d_fake.detach().float().mean()), "grad_norm/d": grad_norm, **shares(terms)}

    def g_step(self, n: int, device: torch.device, ctx: TrainContext) -> dict[str, float]:
        """One G update through the (augmented, frozen) discriminator."""
        gen, disc = ctx.net("generator"), ctx.net("discriminator")
        with self._frozen_discriminator(ctx):  # no D gradients leak into the next D update
            z = torch.randn(n, self.latent_dim, device=device)
            with ctx.autocast():
                l_g = self._g_loss(disc(self.augment(gen(z))))
            ctx.backward(l_g, "g")
            grad_norm = ctx.step("g")
        return {"loss/g": float(l_g.detach()), "grad_norm/g": grad_norm}
