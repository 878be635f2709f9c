"""Latent sampling: DDPM/DDIM (for the DDPM objective) and rectified-flow (for the rflow
objective) schedulers from MONAI, and classifier-free guidance."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch

from medgen_cli.errors import MedgenError

SAMPLERS = ("ddpm", "ddim", "rflow")
# Which samplers can run a model trained with each objective: DDPM/DDIM invert the noise
# schedule an epsilon/v model was trained on; a rectified-flow model predicts a velocity along
# straight paths, which only the RFlow (Euler) sampler integrates.
COMPATIBLE = {"ddpm": ("ddpm", "ddim"), "rflow": ("rflow",)}


def default_sampler(noise_cfg: Any, configured: str = "auto") -> str:
    """The sampler ``auto`` stands for: DDIM for the DDPM objective, RFlow for rectified flow."""
    if configured != "auto":
        return configured
    return "rflow" if noise_cfg.objective == "rflow" else "ddim"


def sampler_error(noise_cfg: Any, kind: str) -> str | None:
    """Why ``kind`` cannot sample a model trained with ``noise_cfg`` (``None``: it can)."""
    if kind not in SAMPLERS:
        return f"unknown --scheduler {kind!r}; use one of {', '.join(SAMPLERS)}"
    ok = COMPATIBLE[noise_cfg.objective]
    if kind not in ok:
        return (f"--scheduler {kind} cannot sample a model trained with noise.objective={noise_cfg.objective}; "
                f"use {' or '.join(ok)}")
    return None


def make_scheduler(noise_cfg: Any, kind: str = "ddpm") -> Any:
    """A MONAI DDPM, DDIM or RFlow scheduler for the configured forward process."""
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler

    if kind not in SAMPLERS:
        raise MedgenError(f"unknown --scheduler {kind!r}", f"use one of {', '.join(SAMPLERS)}")
    if kind == "rflow":
        # Continuous time (MAISI v2's choice); no resolution-dependent time shift: latents here are
        # small (8^3-16^3), below the 32^3 reference size of MONAI's transform.
        return RFlowScheduler(num_train_timesteps=noise_cfg.num_train_timesteps, use_discrete_timesteps=False,
                              sample_method=noise_cfg.timestep_sampling, use_timestep_transform=False)
    kwargs: dict[str, Any] = dict(num_train_timesteps=noise_cfg.num_train_timesteps, schedule=noise_cfg.schedule,
                                  prediction_type=noise_cfg.prediction_type, clip_sample=noise_cfg.clip_sample)
    if noise_cfg.schedule != "cosine":
        kwargs.update(beta_start=noise_cfg.beta_start, beta_end=noise_cfg.beta_end)
    return DDPMScheduler(**kwargs) if kind == "ddpm" else DDIMScheduler(**kwargs)


def rflow_timesteps(n: int, num_train_timesteps: int, method: str, gen: torch.Generator | None,
                    device: torch.device) -> torch.Tensor:
    """Continuous training times in ``[0, T)`` for rectified flow (uniform or logit-normal, as
    MONAI's ``RFlowScheduler.sample_timesteps`` but from ``gen`` so validation is repeatable)."""
    g_dev = device if gen is None else gen.device
    if method == "uniform":
        u = torch.rand((n,), generator=gen, device=g_dev)
    else:
        u = torch.sigmoid(torch.randn((n,), generator=gen, device=g_dev))
    return (u * num_train_timesteps).to(device)


def _step(scheduler: Any, out: torch.Tensor, t: Any, next_t: Any, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    from monai.networks.schedulers import RFlowScheduler

    if isinstance(scheduler, RFlowScheduler):
        return scheduler.step(out, float(t), x, float(next_t))[0]
    return scheduler.step(out, int(t), x, generator=gen)[0]


@torch.no_grad()
def denoise(unet: torch.nn.Module, scheduler: Any, noise: torch.Tensor, labels: torch.Tensor | None,
            null_label: int | None, guidance: float | None, seed: int,
            track: Callable[[Iterator[Any], int, str], Iterator[Any]] | None = None,
            description: str = "sampling") -> torch.Tensor:
    """Run the reverse process from ``noise`` (latents, already scaled) to clean latents.

    Args:
        unet: the (EMA) DiffusionModelUNet.
        scheduler: a MONAI DDPM/DDIM/RFlow scheduler with ``set_timesteps`` already called.
        noise: ``[B, C, *latent]`` starting noise.
        labels: class labels ``[B]`` for a conditional model, else ``None``.
        null_label: the "no class" label used for the unconditional half of CFG.
        guidance: classifier-free guidance scale (``None`` or 1 = plain conditional).
        seed: seeds the DDPM step noise (DDIM with eta 0 and RFlow draw none).
        track: progress wrapper ``(iterator, total, description)``.
    """
    x = noise
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    timesteps = [t.item() for t in scheduler.timesteps]
    # RFlow integrates from each time to the next one, the last step lands on t = 0
    pairs: Iterator[Any] = iter(list(zip(timesteps, [*timesteps[1:], 0])))
    if track is not None:
        pairs = track(pairs, len(timesteps), description)
    use_cfg = labels is not None and guidance is not None and guidance != 1.0
    dtype = torch.long if isinstance(timesteps[0], int) else torch.float32
    for t, next_t in pairs:
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=dtype)
        if use_cfg:
            null = torch.full_like(labels, int(null_label))
            out = unet(torch.cat([x, x]), torch.cat([tt, tt]), class_labels=torch.cat([null, labels]))
            uncond, cond = out.float().chunk(2)
            out = uncond + guidance * (cond - uncond)
        else:
            out = unet(x, tt, class_labels=labels).float()
        x = _step(scheduler, out, t, next_t, x, gen)
    return x
