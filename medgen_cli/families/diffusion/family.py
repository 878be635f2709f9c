"""``diffusion`` family: a MONAI DiffusionModelUNet learns the (scaled) latents of a trained
autoencoder run with the DDPM objective; sampling decodes DDPM/DDIM latents back to volumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medgen_cli.families.latents import interpolation_path, seeded_normal
from medgen_cli.families.diffusion.latent_cache import LatentCache
from medgen_cli.contract.context import InferenceContext, TrainContext
from medgen_cli.errors import MedgenError
from medgen_cli.data import datasets
from medgen_cli.viz import montage
from medgen_cli.families.autoencoder.config import AutoencoderConfig, ImageDataConfig
from medgen_cli.contract.capabilities import Interpolating, Sampling
from medgen_cli.contract.family import Family
from medgen_cli.families.diffusion import sampling
from medgen_cli.families.diffusion.config import DiffusionConfig
from medgen_cli.families.diffusion.options import DiffusionInterpolateOptions, DiffusionSampleOptions
from medgen_cli.contract.samples import Samples, frame_samples, seeded_samples


def autoencoder_config(run: str | None) -> AutoencoderConfig:
    """The saved config of an autoencoder run, with clear errors for a missing or foreign run."""
    from medgen_cli.config.loading import validate_config
    from medgen_cli.config.migrations import load_run_config

    if not run:
        raise MedgenError("autoencoder_run is not set",
                          "train one with `medgen train autoencoder`, then --set autoencoder_run=runs/autoencoder/NAME")
    path = Path(run)
    if not (path / "config.yaml").is_file():
        raise MedgenError(f"autoencoder_run {path} is not a run directory (no config.yaml)",
                          "point autoencoder_run at runs/autoencoder/NAME of a trained autoencoder")
    saved = load_run_config(path)
    if saved.get("family") != "autoencoder":
        raise MedgenError(f"autoencoder_run {path} is a '{saved.get('family')}' run, not an autoencoder run",
                          "point autoencoder_run at runs/autoencoder/NAME")
    return validate_config(AutoencoderConfig, saved)


def stored_autoencoder_config(cfg: DiffusionConfig) -> AutoencoderConfig:
    """The autoencoder config this diffusion run was trained with: the copy in its own config
    (``autoencoder``), or, for runs made before that copy existed, the autoencoder run's."""
    if cfg.autoencoder is not None:
        return cfg.autoencoder
    return autoencoder_config(cfg.autoencoder_run)


def latent_data_config(ae_cfg: AutoencoderConfig, cfg: DiffusionConfig) -> ImageDataConfig:
    """The autoencoder's data settings with this run's root, flips, caching and labels."""
    d = ae_cfg.data
    return d.model_copy(update={
        "root": cfg.data.root or d.root, "flip": cfg.data.flip, "rotate": False,
        "cache_rate": cfg.data.cache_rate, "cache_max_gb": cfg.data.cache_max_gb, "use_labels": cfg.conditioning.enabled,
    })


class DiffusionFamily(Family[DiffusionConfig], Sampling[DiffusionSampleOptions],
                      Interpolating[DiffusionInterpolateOptions]):
    """Latent DDPM with optional class conditioning (classifier-free guidance)."""

    name = "diffusion"
    ema_modules = ("unet",)
    key_metric = "loss"
    key_mode = "min"
    sample_options = DiffusionSampleOptions
    interpolate_options = DiffusionInterpolateOptions

    def __init__(self, cfg: DiffusionConfig) -> None:
        super().__init__(cfg)
        self.scale_factor: float | None = None
        #: (min, max) of the training volumes; decoded samples are clipped to it.
        self.value_range: tuple[float, float] | None = None
        self.affine: list[list[float]] | None = None
        self.num_classes = 0
        #: Flip states the UNet is told about (data.flip with data.flip_label: 2^dims), else 1.
        self.flip_states = 1
        self._train_ds: Any = None
        self._val_ds: Any = False
        self._latent_cache = LatentCache(int(cfg.data.latent_cache_gb * 2**30))

    # ---- building ------------------------------------------------------------------------------
    @classmethod
    def resolve_config(cls, cfg: DiffusionConfig) -> DiffusionConfig:
        """Copy the autoencoder run's config in and count the classes, before the run folder is
        written: the run then rebuilds from itself (the autoencoder's weights are in every
        checkpoint) and ``config.yaml`` equals the config its checkpoints store."""
        ae_cfg = stored_autoencoder_config(cfg)
        values = cfg.model_dump(mode="json")
        values["autoencoder"] = ae_cfg.model_dump(mode="json")
        cond = cfg.conditioning
        if cond.enabled and cond.num_classes is None:
            values["conditioning"]["num_classes"] = datasets.num_classes(latent_data_config(ae_cfg, cfg))
        return type(cfg).model_validate(values)

    def data_config(self) -> ImageDataConfig:
        """The autoencoder's data settings with this run's root, flips, caching and labels."""
        return latent_data_config(self.ae_cfg, self.cfg)

    def latent_shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of the autoencoder's latent (each level halves the size)."""
        size = list(self.ae_cfg.data.size)
        for _ in range(len(self.ae_cfg.model.channels) - 1):
            size = [s // 2 for s in size]
        return (self.ae_cfg.model.latent_channels, *size)

    def build(self, device: torch.device) -> None:
        from monai.networks.nets import DiffusionModelUNet

        from medgen_cli.families.autoencoder.family import build_autoencoder

        self.ae_cfg = stored_autoencoder_config(self.cfg)
        cond = self.cfg.conditioning
        if cond.enabled:
            # resolve_config fixed num_classes for runs it started; the config is not changed here.
            self.num_classes = cond.num_classes or datasets.num_classes(self.data_config())
        if self.cfg.data.flip and self.cfg.data.flip_label:
            self.flip_states = 2**self.ae_cfg.data.spatial_dims
        # One embedding per (class or the "no class" token of classifier-free guidance) × flip state.
        classes = self.num_classes + 1 if cond.enabled else 1
        embeds = classes * self.flip_states if cond.enabled or self.flip_states > 1 else None
        u = self.cfg.unet
        latent_c = self.ae_cfg.model.latent_channels
        unet = DiffusionModelUNet(
            spatial_dims=self.ae_cfg.data.spatial_dims, in_channels=latent_c, out_channels=latent_c,
            num_res_blocks=u.num_res_blocks, channels=tuple(u.channels), attention_levels=tuple(u.attention_levels),
            num_head_channels=tuple(u.num_head_channels), norm_num_groups=u.norm_num_groups,
            num_class_embeds=embeds,
        ).to(device)
        ae = build_autoencoder(self.ae_cfg).to(device).requires_grad_(False)
        # The autoencoder is saved with every checkpoint, so sampling never depends on the
        # autoencoder run's weights changing later.
        self.modules = {"unet": unet, "autoencoder": ae}
        self.optimizers = {"unet": torch.optim.Adam(unet.parameters(), lr=self.cfg.optimizer.lr)}
        self.scheduler = sampling.make_scheduler(self.cfg.noise, "rflow" if self.cfg.noise.objective == "rflow" else "ddpm")

    def check_data(self) -> None:
        # Only an explicit data.root: the autoencoder's own root is read when it is built, and
        # its files are still named by the dataset if one fails to load.
        if self.cfg.data.root:
            from medgen_cli.data.volumes import check_volume_tree

            check_volume_tree(self.cfg.data.root)

    def train_dataset(self) -> Any:
        if self._train_ds is None:
            self._train_ds = datasets.make_dataset(self.data_config(), "train")
        return self._train_ds

    def val_dataset(self) -> Any:
        if self._val_ds is False:
            self._val_ds = datasets.make_dataset(self.data_config(), "val")
        return self._val_ds

    def prepare(self, ctx: TrainContext) -> None:
        """Load the autoencoder run's weights, then fix the latent scale factor once. On resume the
        checkpoint holds all three (autoencoder weights, scale factor, affine): the autoencoder
        run is not read, so it may have been moved or deleted."""
        if ctx.resuming:
            return
        if ctx.load_run is None:
            raise MedgenError("a diffusion run is prepared by the trainer, which loads its autoencoder run")
        ae_run = ctx.load_run(self.cfg.autoencoder_run, checkpoint=self.cfg.autoencoder_checkpoint, device=str(ctx.device))
        if ae_run.family.name != "autoencoder":
            raise MedgenError(f"autoencoder_run {self.cfg.autoencoder_run} is not an autoencoder run")
        self.modules["autoencoder"].load_state_dict(ae_run.ctx.eval_module("autoencoder").state_dict())
        self.affine = ae_run.family.affine or datasets.data_affine(self.data_config())
        self.value_range = self._measure_value_range()
        if self.cfg.scale_factor is not None:
            self.scale_factor = float(self.cfg.scale_factor)
        else:
            ds = self.train_dataset()
            n = min(len(ds), self.cfg.trainer.batch_size)  # one training batch, as MONAI's tutorial
            x = torch.stack([ds[i]["image"] for i in range(n)]).to(ctx.device)
            with torch.no_grad():
                z = self.modules["autoencoder"].encode_stage_2_inputs(x).float()
            self.scale_factor = float(1.0 / z.std().clamp_min(1e-8))

    def _measure_value_range(self) -> tuple[float, float]:
        """[0, 1] for min-max scaled data, else the min/max over up to 16 training volumes."""
        if self.data_config().intensity == "minmax":
            return (0.0, 1.0)
        ds = self.train_dataset()
        vals = [ds[i]["image"] for i in range(min(len(ds), 16))]
        return (min(float(v.min()) for v in vals), max(float(v.max()) for v in vals))

    # ---- training ------------------------------------------------------------------------------
    def _latents(self, x: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """Scaled posterior samples of the batch; ``(mu, sigma)`` come from the latent cache
        (:mod:`~medgen_cli.families.diffusion.latent_cache`) when it holds the volume."""
        with torch.no_grad(), ctx.autocast():
            z = self._latent_cache.sample(self.modules["autoencoder"].encode, x)
        return z.float() * self.scale_factor

    def _labels(self, batch: Any, drop: float, gen: torch.Generator | None = None) -> torch.Tensor | None:
        if not self.cfg.conditioning.enabled:
            return None
        labels = batch["label"].long().view(-1)
        if drop > 0:
            u = torch.rand(labels.shape, generator=gen, device=labels.device if gen is None else gen.device)
            labels = torch.where(u.to(labels.device) < drop, torch.full_like(labels, self.num_classes), labels)
        return labels

    def _embedding(self, classes: torch.Tensor | None, codes: torch.Tensor | None, n: int,
                   device: torch.device) -> torch.Tensor | None:
        """The UNet's ``class_labels``: ``class · flip_states + flip code`` (class: the label or the
        "no class" token; an unconditional run's is 0; code 0: not flipped, what sampling asks
        for), or ``classes`` itself when the UNet is not told about flips."""
        if self.flip_states == 1:
            return classes
        cls = torch.zeros(n, dtype=torch.long, device=device) if classes is None else classes.to(device)
        code = torch.zeros_like(cls) if codes is None else codes.to(device)
        return cls * self.flip_states + code

    def _loss(self, unet: torch.nn.Module, z: torch.Tensor, labels: torch.Tensor | None, ctx: TrainContext,
              gen: torch.Generator | None = None) -> torch.Tensor:
        """MSE of the UNet's prediction: the noise / v (DDPM) or the velocity ``z - noise`` (rflow)."""
        n = self.cfg.noise
        T = self.scheduler.num_train_timesteps
        noise = torch.randn(z.shape, generator=gen, device=z.device if gen is None else gen.device).to(z.device)
        if n.objective == "rflow":
            t = sampling.rflow_timesteps(z.shape[0], T, n.timestep_sampling, gen, z.device)
        else:
            t = torch.randint(0, T, (z.shape[0],), generator=gen, device=z.device if gen is None else gen.device).to(z.device)
        noisy = self.scheduler.add_noise(original_samples=z, noise=noise, timesteps=t)
        with ctx.autocast():
            pred = unet(noisy, t, class_labels=labels)
        if n.objective == "rflow":
            target = z - noise  # x_t = (1 - t/T) z + (t/T) noise moves towards z at this velocity as t falls
        elif n.prediction_type == "epsilon":
            target = noise
        else:
            target = self.scheduler.get_velocity(z, noise, t)
        return F.mse_loss(pred.float(), target)

    def train_step(self, batch: Any, ctx: TrainContext) -> dict[str, float]:
        x, codes = batch["image"], None
        if self.flip_states > 1:  # flips the UNet is told about (data.flip_label)
            codes = datasets.flip_codes(x.shape[0], x.ndim - 2)
            x = datasets.flip_by_code(x, codes)
        else:
            x = datasets.augment_batch(x, self.cfg.data.flip, False)
        z = self._latents(x, ctx)
        labels = self._embedding(self._labels(batch, self.cfg.conditioning.label_dropout), codes, z.shape[0], z.device)
        loss = self._loss(ctx.net("unet"), z, labels, ctx)
        ctx.backward(loss, "unet")
        return {"loss": float(loss.detach()), "grad_norm": ctx.step("unet")}

    def validate(self, batches: Any, ctx: TrainContext) -> dict[str, float]:
        # Fixed noise and timesteps so validation losses are comparable across steps.
        unet = ctx.eval_module("unet")
        gen = torch.Generator().manual_seed(1234)
        total, n = 0.0, 0
        for batch in batches:
            z = self._latents(batch["image"], ctx)
            labels = self._embedding(self._labels(batch, 0.0), None, z.shape[0], z.device)
            total += float(self._loss(unet, z, labels, ctx, gen)) * z.shape[0]
            n += z.shape[0]
        return {"loss": total / n} if n else {}

    def log_images(self, ctx: TrainContext) -> None:
        s = self.cfg.sample
        vols = self.generate(ctx.eval_module("unet"), ctx.eval_module("autoencoder"), ctx.device, s.num_images, 0,
                             None, s.steps)
        ctx.add_image("samples/slices", montage.grid_tensor(list(vols)))

    # ---- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"scale_factor": self.scale_factor, "affine": self.affine, "num_classes": self.num_classes,
                "value_range": self.value_range}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("scale_factor") is not None:
            self.scale_factor = float(state["scale_factor"])
        if state.get("affine") is not None:
            self.affine = state["affine"]
        if state.get("value_range") is not None:  # older runs recorded none: not clipped
            self.value_range = (float(state["value_range"][0]), float(state["value_range"][1]))

    # ---- sampling --------------------------------------------------------------------------------
    def _sampler(self, kind: str | None, steps: int | None) -> Any:
        default = sampling.default_sampler(self.cfg.noise, self.cfg.sample.scheduler)
        kind = kind or default
        problem = sampling.sampler_error(self.cfg.noise, kind)
        if problem is not None:
            raise MedgenError(problem)
        # sample.steps belongs to the default sampler; DDPM otherwise walks every training step
        steps = steps or (self.cfg.noise.num_train_timesteps if kind == "ddpm" and kind != default else self.cfg.sample.steps)
        if steps > self.cfg.noise.num_train_timesteps:
            raise MedgenError(f"--steps {steps} exceeds the {self.cfg.noise.num_train_timesteps} training timesteps")
        sched = sampling.make_scheduler(self.cfg.noise, kind)
        sched.set_timesteps(steps)
        return sched

    def check_request(self, scheduler: str | None, steps: int | None, guidance_scale: float | None,
                      class_label: int | None) -> None:
        """Refuse sampling options this run cannot honour (the options models call it).

        Raises:
            ValueError: one sentence naming the flag (turned into a MedgenError line).
        """
        problem = None if scheduler is None else sampling.sampler_error(self.cfg.noise, scheduler)
        if problem is not None:
            raise ValueError(problem)
        if steps is not None and steps > self.cfg.noise.num_train_timesteps:
            raise ValueError(f"--steps {steps} exceeds the {self.cfg.noise.num_train_timesteps} training timesteps")
        if not self.cfg.conditioning.enabled:
            for flag, value in (("--guidance-scale", guidance_scale), ("--class-label", class_label)):
                if value is not None:
                    raise ValueError(f"{flag} needs a class-conditional run; this one was trained with "
                                     "conditioning.enabled=false")
        elif class_label is not None and class_label >= self.num_classes:
            raise ValueError(f"--class-label must be in [0, {self.num_classes - 1}]")

    def _label_list(self, n: int, class_label: int | None, seed: int = 0) -> list[int] | None:
        """The class of each of ``n`` samples from seeds ``seed, seed + 1, ...``: ``class_label``,
        else the seed's class ``(seed + i) % classes`` (0, 1, ... from seed 0), so a seed gives the
        same sample however the request is split (``--nproc``) (``None``: an unconditional run)."""
        if not self.cfg.conditioning.enabled:
            return None
        return [class_label if class_label is not None else (seed + i) % self.num_classes for i in range(n)]

    def _class_labels(self, n: int, class_label: int | None, device: torch.device, seed: int = 0) -> torch.Tensor | None:
        labels = self._label_list(n, class_label, seed)
        return None if labels is None else torch.tensor(labels, dtype=torch.long, device=device)

    def _require_ready(self) -> None:
        if self.scale_factor is None:
            raise MedgenError("this diffusion run has no latent scale factor", "its checkpoint is incomplete; retrain")

    def decode(self, ae: torch.nn.Module, latents: torch.Tensor) -> np.ndarray:
        """Scaled latents → volumes ``[B, *size]`` (the scale factor is undone first), clipped to
        the training data's value range unless ``sample.clip_to_data_range`` is off."""
        vols = ae.decode_stage_2_outputs(latents / self.scale_factor).float()[:, 0]
        if self.cfg.sample.clip_to_data_range and self.value_range is not None:
            vols = vols.clamp(*self.value_range)
        return vols.cpu().numpy()

    def generate(self, unet: torch.nn.Module, ae: torch.nn.Module, device: torch.device, num: int, seed: int,
                 scheduler: str | None = None, steps: int | None = None, guidance_scale: float | None = None,
                 class_label: int | None = None, batch_size: int = 4, track: Any = None) -> np.ndarray:
        """``num`` volumes ``[num, *size]``; sample ``i`` starts from the noise of seed ``seed + i``."""
        self._require_ready()
        sched = self._sampler(scheduler, steps)
        labels = self._embedding(self._class_labels(num, class_label, device, seed), None, num, device)
        guidance = guidance_scale if guidance_scale is not None else self.cfg.conditioning.guidance_scale
        out = []
        batches = range(0, num, batch_size)
        for k, start in enumerate(batches):
            seeds = list(range(seed + start, seed + min(start + batch_size, num)))
            noise = seeded_normal(self.latent_shape(), seeds).to(device)
            lab = None if labels is None else labels[start:start + len(seeds)]
            z = sampling.denoise(unet, sched, noise, lab, self.num_classes * self.flip_states, guidance, seeds[0], track,
                                 f"batch {k + 1}/{len(batches)}")
            out.append(self.decode(ae, z))
        return np.concatenate(out)

    def interpolate_volumes(self, unet: torch.nn.Module, ae: torch.nn.Module, device: torch.device, seed_a: int,
                            seed_b: int, steps: int, method: str = "slerp", scheduler: str | None = "ddim",
                            sample_steps: int | None = None, track: Any = None) -> np.ndarray:
        """Frames ``[steps, *size]`` decoded from slerp/lerp mixes of two seeds' noise (DDIM:
        deterministic). Conditional runs are sampled unconditionally (the "no class" label)."""
        self._require_ready()
        sched = self._sampler(scheduler or sampling.default_sampler(self.cfg.noise), sample_steps)
        a, b = seeded_normal(self.latent_shape(), [seed_a, seed_b])
        path = interpolation_path(a, b, steps, method)
        frames = []
        for i in range(steps):
            noise = path[i][None].to(device)
            lab = None
            if self.cfg.conditioning.enabled:
                lab = torch.full((1,), self.num_classes, dtype=torch.long, device=device)
            lab = self._embedding(lab, None, 1, device)
            z = sampling.denoise(unet, sched, noise, lab, None, None, seed_a, track,
                                 f"frame {i + 1}/{steps}")
            frames.append(self.decode(ae, z))
        return np.concatenate(frames)

    # ---- the inference contract (medgen sample / interpolate, medgen_cli.api) --------------------
    def _affine(self) -> np.ndarray:
        return np.asarray(self.affine if self.affine is not None else np.eye(4))

    def sample(self, opts: DiffusionSampleOptions, ctx: InferenceContext) -> Samples:
        """:meth:`generate` with the run's (EMA) modules; labels recorded per sample."""
        vols = self.generate(ctx.eval_module("unet"), ctx.eval_module("autoencoder"), ctx.device, opts.num, opts.seed,
                             opts.scheduler, opts.steps, opts.guidance_scale, opts.class_label, opts.batch_size,
                             ctx.track)
        return seeded_samples(vols[:, None], opts.seed, self._label_list(opts.num, opts.class_label, opts.seed),
                              self._affine())

    def interpolate(self, opts: DiffusionInterpolateOptions, ctx: InferenceContext) -> Samples:
        frames = self.interpolate_volumes(ctx.eval_module("unet"), ctx.eval_module("autoencoder"), ctx.device,
                                          opts.seed_a, opts.seed_b, opts.frames, opts.method, opts.scheduler,
                                          opts.sample_steps, ctx.track)
        return frame_samples(frames[:, None], self._affine())
