"""``autoencoder`` family: MONAI AutoencoderKL trained with L1 + KL (+ LSGAN patch adversarial,
+ perceptual with local weights), the first stage of latent diffusion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medgen_cli.contract.context import InferenceContext, TrainContext
from medgen_cli.contract.metric_names import shares
from medgen_cli.errors import MedgenError
from medgen_cli.data import datasets
from medgen_cli.viz import montage
from medgen_cli.families.autoencoder.config import AutoencoderConfig
from medgen_cli.contract.capabilities import Reconstructing
from medgen_cli.contract.family import Family
from medgen_cli.families.autoencoder import tiles
from medgen_cli.families.autoencoder.options import AutoencoderReconOptions
from medgen_cli.contract.samples import Samples


def build_autoencoder(cfg: AutoencoderConfig) -> torch.nn.Module:
    """The MONAI ``AutoencoderKL`` described by ``cfg`` (also used by the diffusion family)."""
    from monai.networks.nets import AutoencoderKL

    m = cfg.model
    ae = AutoencoderKL(
        spatial_dims=cfg.data.spatial_dims, in_channels=1, out_channels=1, channels=tuple(m.channels),
        latent_channels=m.latent_channels, num_res_blocks=m.num_res_blocks, norm_num_groups=m.norm_num_groups,
        attention_levels=tuple(m.attention_levels), with_encoder_nonlocal_attn=m.with_nonlocal_attn,
        with_decoder_nonlocal_attn=m.with_nonlocal_attn,
    )
    if m.norm == "none":
        drop_group_norms(ae)
    if m.initial_latent_std is not None:
        conv = ae.quant_conv_log_sigma.conv  # MONAI: its output is log(sigma^2)
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.constant_(conv.bias, 2.0 * float(np.log(m.initial_latent_std)))
    return ae


def drop_group_norms(net: torch.nn.Module) -> None:
    """Replace every ``GroupNorm`` inside ``net`` by an identity (in place).

    MONAI's AutoencoderKL has no norm option. Its residual blocks keep an identity path, so the
    network stays trainable without normalisation; what is removed is the per-sample statistics
    that make small training crops behave unlike whole volumes."""
    found = [(parent, name) for parent in net.modules() for name, child in parent.named_children()
             if isinstance(child, torch.nn.GroupNorm)]
    for parent, name in found:
        setattr(parent, name, torch.nn.Identity())


def kl_loss(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma) || N(0, 1)) summed over latent elements, averaged over the batch."""
    z_mu, z_sigma = z_mu.float(), z_sigma.float()
    kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2)) - 1)
    return kl.flatten(1).sum(1).mean()


class AutoencoderFamily(Family[AutoencoderConfig], Reconstructing[AutoencoderReconOptions]):
    """AutoencoderKL + PatchDiscriminator; validation L1/PSNR/SSIM with the EMA weights."""

    name = "autoencoder"
    ema_modules = ("autoencoder",)
    recon_options = AutoencoderReconOptions

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__(cfg)
        self.key_metric = cfg.val.key_metric
        self.key_mode = "min" if cfg.val.key_metric == "l1" else "max"
        self.affine: list[list[float]] | None = None
        self.perceptual: torch.nn.Module | None = None
        self._train_ds: Any = None
        self._val_ds: Any = False
        self._log_batch: torch.Tensor | None = None

    # ---- building ------------------------------------------------------------------------------
    def build(self, device: torch.device) -> None:
        from monai.losses import PatchAdversarialLoss
        from monai.networks.nets import PatchDiscriminator

        c = self.cfg
        ae = build_autoencoder(c).to(device)
        self.modules = {"autoencoder": ae}
        self.optimizers = {"g": torch.optim.Adam(ae.parameters(), lr=c.optimizer.lr_g)}
        if c.loss.adv_weight > 0:
            disc = PatchDiscriminator(spatial_dims=c.data.spatial_dims, num_layers_d=c.model.disc_layers,
                                      channels=c.model.disc_channels, in_channels=1, out_channels=1).to(device)
            self.modules["discriminator"] = disc
            self.optimizers["d"] = torch.optim.Adam(disc.parameters(), lr=c.optimizer.lr_d)
            self.adv_loss = PatchAdversarialLoss(criterion="least_squares")
        self.perceptual = self._build_perceptual(device)

    def _build_perceptual(self, device: torch.device) -> torch.nn.Module | None:
        path = self.cfg.loss.perceptual_weights_path
        if not path or self.cfg.loss.perceptual_weight == 0:
            return None
        if not Path(path).is_file():
            raise MedgenError(f"perceptual weights not found: {path}",
                              "give a local torchvision ResNet-50 state dict, or set loss.perceptual_weights_path=null")
        from monai.losses import PerceptualLoss

        try:
            loss = PerceptualLoss(spatial_dims=self.cfg.data.spatial_dims, network_type="resnet50", is_fake_3d=self.cfg.data.spatial_dims == 3,
                                  fake_3d_ratio=self.cfg.loss.fake_3d_ratio, pretrained=True, pretrained_path=str(path))
        except (RuntimeError, KeyError, OSError) as exc:
            raise MedgenError(f"cannot load perceptual weights {path}: {str(exc).splitlines()[0]}",
                              "expected a torchvision ResNet-50 state dict") from exc
        return loss.to(device).eval().requires_grad_(False)

    def check_data(self) -> None:
        datasets.check_files(self.cfg.data)

    def train_dataset(self) -> Any:
        if self._train_ds is None:
            self._train_ds = datasets.make_dataset(self.cfg.data, "train")
        return self._train_ds

    def val_dataset(self) -> Any:
        if self._val_ds is False:
            self._val_ds = datasets.make_dataset(self.cfg.data, "val")
        return self._val_ds

    def prepare(self, ctx: TrainContext) -> None:
        if self.affine is None:
            self.affine = datasets.data_affine(self.cfg.data)

    # ---- training ------------------------------------------------------------------------------
    def train_step(self, batch: Any, ctx: TrainContext) -> dict[str, float]:
        """One autoencoder update (L1 + KL [+ perceptual] [+ adversarial once ``adv_start_step``
        is reached]), then, with the adversarial term on, one patch-discriminator update."""
        x = datasets.augment_batch(batch["image"], self.cfg.data.flip, self.cfg.data.rotate)
        x = datasets.random_crop(x, self.cfg.data.patch_size)
        lc = self.cfg.loss
        adv_on = "discriminator" in self.modules and ctx.global_step >= lc.adv_start_step
        with ctx.autocast():
            recon, z_mu, z_sigma = ctx.net("autoencoder")(x)
        recon = recon.float()
        l1 = F.l1_loss(recon, x)
        kl = kl_loss(z_mu, z_sigma)
        terms = {"l1": l1, "kl": lc.kl_weight * kl}
        if self.perceptual is not None:
            terms["perceptual"] = lc.perceptual_weight * self.perceptual(recon, x)
        if adv_on:
            with ctx.autocast():
                logits = ctx.net("discriminator")(recon.contiguous())[-1]
            terms["adv"] = lc.adv_weight * self.adv_loss(logits.float(), target_is_real=True, for_discriminator=False)
        loss = sum(terms.values())
        ctx.backward(loss, "g")
        values = {k: float(v.detach()) for k, v in terms.items()}
        out = {"loss/g": float(loss.detach()), **{f"loss/{k}": v for k, v in values.items()},
               "stats/kl": float(kl.detach()), "grad_norm/g": ctx.step("g"), **shares(values)}
        if adv_on:
            out.update(self._discriminator_step(x, recon.detach(), ctx))
        return out

    def _discriminator_step(self, x: torch.Tensor, fake: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        ctx.zero_grad("d")  # drop the gradients the generator step left on D
        disc = ctx.net("discriminator")
        with ctx.autocast():
            fake_logits = disc(fake.contiguous())[-1].float()
            real_logits = disc(x.contiguous())[-1].float()
        d_loss = self.cfg.loss.adv_weight * 0.5 * (
            self.adv_loss(fake_logits, target_is_real=False, for_discriminator=True)
            + self.adv_loss(real_logits, target_is_real=True, for_discriminator=True)
        )
        ctx.backward(d_loss, "d")
        return {"loss/d": float(d_loss.detach()), "d/real": float(real_logits.detach().mean()),
                "d/fake": float(fake_logits.detach().mean()), "grad_norm/d": ctx.step("d")}

    # ---- validation ------------------------------------------------------------------------------
    def _data_range(self, x: torch.Tensor) -> float:
        if self.cfg.data.intensity in ("minmax", "none") or self.cfg.data.spatial_dims == 2:
            return 1.0
        return max(float(x.max() - x.min()), 1e-6)

    def reconstruct_tensor(self, ae: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction (decode the posterior mean)."""
        return tiles.reconstruct(ae, x)

    def validate(self, batches: Any, ctx: TrainContext) -> dict[str, float]:
        from monai.metrics import PSNRMetric, SSIMMetric

        ae = ctx.eval_module("autoencoder")
        sums = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0}
        n = 0
        for batch in batches:
            x = batch["image"]
            recon = self.reconstruct_tensor(ae, x)
            rng = self._data_range(x)
            win = min(11, *x.shape[2:])
            win -= 1 - win % 2  # odd window that fits the smallest axis
            psnr = PSNRMetric(max_val=rng, reduction="none")(recon, x)
            ssim = SSIMMetric(spatial_dims=self.cfg.data.spatial_dims, data_range=rng, win_size=win, reduction="none")(recon, x)
            sums["l1"] += float((recon - x).abs().flatten(1).mean(1).sum())
            sums["psnr"] += float(psnr.sum())
            sums["ssim"] += float(ssim.sum())
            n += x.shape[0]
            if self._log_batch is None:
                self._log_batch = x[: self.cfg.val.num_images].detach().cpu()
        return {k: v / n for k, v in sums.items()} if n else {}

    def log_images(self, ctx: TrainContext) -> None:
        x = self._log_batch
        if x is None:
            ds = self.train_dataset()
            x = torch.stack([ds[i]["image"] for i in range(min(len(ds), self.cfg.val.num_images))])
            self._log_batch = x
        recon = self.reconstruct_tensor(ctx.eval_module("autoencoder"), x.to(ctx.device)).cpu()
        from medgen_cli.viz.slices import psnr

        # Rows per image: input, reconstruction, |error| (each row on its own scale), and the PSNR.
        pairs = list(zip(x[:, 0].numpy(), recon[:, 0].numpy()))
        vols = [v for a, b in pairs for v in (a, b, np.abs(a - b))]
        ctx.add_image("reconstruction/input_recon_error", montage.grid_tensor(vols))
        ctx.add_scalar("reconstruction/psnr_logged_images", float(np.mean([psnr(a, b) for a, b in pairs])))

    # ---- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"affine": self.affine}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("affine") is not None:
            self.affine = state["affine"]

    # ---- inference -------------------------------------------------------------------------------
    def _load_input(self, p: Path, resize: bool) -> tuple[torch.Tensor, np.ndarray]:
        """The file as the model sees it (``[1, *spatial]``) and its voxel-to-world matrix: at
        the run's data.size, or with ``resize=False`` on the file's own grid (3D)."""
        data = self.cfg.data
        if data.spatial_dims == 2:
            from medgen_cli.data.images import load_image

            img2d = load_image(p, 1, data.size[0]).transpose(2, 0, 1)
            return torch.from_numpy(np.ascontiguousarray(img2d)), np.eye(4)
        import nibabel as nib

        from medgen_cli.data.volumes import check_volume_file, make_volume_dataset

        shape = tuple(data.size) if resize else tuple(check_volume_file(p, 3)[:3])
        x = make_volume_dataset([p], shape, intensity=data.intensity)[0]["image"]
        img = nib.load(str(p))
        return x, datasets.resized_affine(img.affine, img.shape[:3], shape)

    def reconstruct_file(self, path: str | Path, ae: torch.nn.Module, device: torch.device,
                         opts: AutoencoderReconOptions | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input as the model sees it, reconstruction, output affine) for one volume/image file,
        in overlapping tiles where it is larger than ``opts.tile`` (default: data.size)."""
        p = Path(path)
        if not p.is_file():
            raise MedgenError(f"input not found: {p}")
        opts = opts if opts is not None else AutoencoderReconOptions(input=p)
        x, affine = self._load_input(p, opts.resize)
        factor = tiles.downsampling(len(self.cfg.model.channels))
        tile = opts.tile if opts.tile is not None else tuple(self.cfg.data.size)
        with torch.no_grad():
            recon = tiles.reconstruct_tiled(ae, x[None], tile, opts.overlap, factor, device)[0, 0].numpy()
        return x[0].numpy(), recon, affine

    def recon(self, opts: AutoencoderReconOptions, ctx: InferenceContext) -> Samples:
        """The reconstruction of ``opts.input`` at the model's size (or, ``resize=False``, at the
        input's own), with the input's affine adapted to that grid; the input is kept for the
        comparison preview."""
        inp, recon, affine = self.reconstruct_file(opts.input, ctx.eval_module("autoencoder"), ctx.device, opts)
        name = Path(opts.input).name.split(".")[0]
        return Samples(arrays=recon[None, None], names=[f"recon_{name}"], seeds=[None], labels=[None],
                       affine=affine, preview="compare", references=inp[None, None],
                       extra=[{"input": str(opts.input)}])
