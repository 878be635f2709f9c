"""Latent sampling: DDPM/DDIM schedulers and classifier-free guidance."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch

from medgen_cli.errors import MedgenError

SAMPLERS = ("ddpm", "ddim")


def make_scheduler(noise_cfg: Any, kind: str = "ddpm") -> Any:
    """A MONAI DDPM or DDIM scheduler for the configured forward process."""
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    if kind not in SAMPLERS:
        raise MedgenError(f"unknown --scheduler {kind!r}", f"use one of {', '.join(SAMPLERS)}")
    kwargs: dict[str, Any] = dict(num_train_timesteps=noise_cfg.num_train_timesteps, schedule=noise_cfg.schedule,
                                  prediction_type=noise_cfg.prediction_type, clip_sample=noise_cfg.clip_sample)
    if noise_cfg.schedule != "cosine":
        kwargs.update(beta_start=noise_cfg.beta_start, beta_end=noise_cfg.beta_end)
    return DDPMScheduler(**kwargs) if kind == "ddpm" else DDIMScheduler(**kwargs)


@torch.no_grad()
def denoise(unet: torch.nn.Module, scheduler: Any, noise: torch.Tensor, labels: torch.Tensor | None,
            null_label: int | None, guidance: float | None, seed: int,
            track: Callable[[Iterator[Any], int, str], Iterator[Any]] | None = None,
            description: str = "sampling") -> torch.Tensor:
    """Run the reverse process from ``noise`` (latents, already scaled) to clean latents.

    Args:
        unet: the (EMA) DiffusionModelUNet.
        scheduler: a MONAI scheduler with ``set_timesteps`` already called.
        noise: ``[B, C, *latent]`` starting noise.
        labels: class labels ``[B]`` for a conditional model, else ``None``.
        null_label: the "no class" label used for the unconditional half of CFG.
        guidance: classifier-free guidance scale (``None`` or 1 = plain conditional).
        seed: seeds the DDPM step noise (DDIM with eta 0 draws none).
        track: progress wrapper ``(iterator, total, description)``.
    """
    x = noise
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    timesteps = scheduler.timesteps
    it: Iterator[Any] = iter(timesteps)
    if track is not None:
        it = track(it, len(timesteps), description)
    use_cfg = labels is not None and guidance is not None and guidance != 1.0
    for t in it:
        tt = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        if use_cfg:
            null = torch.full_like(labels, int(null_label))
            out = unet(torch.cat([x, x]), torch.cat([tt, tt]), class_labels=torch.cat([null, labels]))
            uncond, cond = out.float().chunk(2)
            out = uncond + guidance * (cond - uncond)
        else:
            out = unet(x, tt, class_labels=labels).float()
        x, _ = scheduler.step(out, int(t), x, generator=gen)
    return x
