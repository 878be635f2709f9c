"""Discriminator augmentation for small data sets: DiffAugment and a reduced ADA pipeline.

Both operate on image batches ``[B, C, H, W]`` in the generator's range ([-1, 1]) and are
differentiable with respect to the images, so the generator learns through them and R1 is taken
through them (as in DiffAugment, Zhao et al. 2020, and StyleGAN2-ADA, Karras et al. 2020). They
must be applied to *both* real and fake images, in D and G steps alike, or D learns to tell the
augmentation apart from the data.

Grayscale awareness: saturation changes the distance of each channel to the channel mean, which
is identically zero for one channel, so it is skipped there instead of wasting random numbers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from medgen_cli.families.gan2d.config import AugmentConfig


def process_count() -> int:
    """Processes training together (torch.distributed's world size; 1 without a process group), so
    that quantities counted in images use the global batch, ``trainer.batch_size`` × this."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def mean_over_ranks(value: torch.Tensor) -> float:
    """A scalar's mean over the DDP ranks (itself in one process)."""
    if process_count() == 1:
        return float(value)
    import torch.distributed as dist

    total = value.detach().double().reshape(1).clone()
    dist.all_reduce(total)
    return float(total) / process_count()


def _summed_over_ranks(sign_sum: float, count: int, images: int, device: torch.device) -> tuple[float, int, int]:
    """One D step's (sign sum, outputs, images) summed over the DDP ranks (as they are, alone)."""
    if process_count() == 1:
        return sign_sum, count, images
    import torch.distributed as dist

    # float64 keeps the integer sums exact; NCCL needs the tensor on the GPU (D's device).
    sums = torch.tensor([sign_sum, count, images], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    total, n, imgs = sums.tolist()
    return total, int(n), int(imgs)


# ---- geometric helpers --------------------------------------------------------------------------
def _shift(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """Translate each image of ``x`` by integer ``(dx[b], dy[b])`` pixels (|d| <= pad)."""
    b, _, h, w = x.shape
    padded = F.pad(x, [pad, pad, pad, pad], mode=mode)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + pad - dy.view(b, 1, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) + pad - dx.view(b, 1, 1)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    # Advanced indexing [b, :, rows, cols] puts the channel axis last; move it back.
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def _per_sample(x: torch.Tensor, shape_tail: int = 3) -> tuple[int, ...]:
    return (x.shape[0],) + (1,) * shape_tail


# ---- DiffAugment --------------------------------------------------------------------------------
def diff_color(x: torch.Tensor) -> torch.Tensor:
    """Brightness ±0.5, saturation ×[0, 2] (RGB only), contrast ×[0.5, 1.5]."""
    shape = _per_sample(x)
    x = x + (torch.rand(shape, device=x.device, dtype=x.dtype) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(shape, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(shape, device=x.device, dtype=x.dtype) + 0.5) + mean


def diff_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Integer shifts of up to ``ratio`` of the image size, zero padded."""
    sh, sw = int(x.shape[2] * ratio + 0.5), int(x.shape[3] * ratio + 0.5)
    pad = max(sh, sw)
    if pad == 0:
        return x
    dy = torch.randint(-sh, sh + 1, (x.shape[0],), device=x.device)
    dx = torch.randint(-sw, sw + 1, (x.shape[0],), device=x.device)
    return _shift(x, dx, dy, pad, mode="constant")


def diff_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of ``ratio`` × the image size at a random centre (clipped at the border)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    rel_r = torch.arange(h, device=x.device).view(1, h, 1) - cy + ch // 2
    rel_c = torch.arange(w, device=x.device).view(1, 1, w) - cx + cw // 2
    inside = (rel_r >= 0) & (rel_r < ch) & (rel_c >= 0) & (rel_c < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_DIFF_OPS = {"color": diff_color, "translation": diff_translation, "cutout": diff_cutout}


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout") -> torch.Tensor:
    """Apply the DiffAugment ``policy`` (comma-separated op names) to a batch."""
    for name in filter(None, (p.strip() for p in policy.split(","))):
        x = _DIFF_OPS[name](x)
    return x


# ---- ADA (reduced pipeline) ---------------------------------------------------------------------
def ada_augment(x: torch.Tensor, p: float) -> torch.Tensor:
    """ADA-style augmentation: each transform is applied to each image with probability ``p``.

    Transforms (a reduced "bgc" pipeline of StyleGAN2-ADA, all leak-free at p < ~0.8 because
    each has a non-identity probability < 1): horizontal flip, 90° rotation, integer translation
    (1/8, reflect padding), brightness (N(0, 0.2)), contrast (log-normal, σ = 0.5·ln 2),
    saturation (RGB only, log-normal, σ = ln 2).
    """
    if p <= 0:
        return x
    b, c, h, w = x.shape
    dev, dt = x.device, x.dtype

    def chosen() -> torch.Tensor:
        return torch.rand(b, device=dev) < p

    flip = chosen().view(b, 1, 1, 1)
    x = torch.where(flip, x.flip(3), x)
    if h == w:
        k = torch.randint(1, 4, (b,), device=dev) * chosen()
        rotated = x
        for quarter in (1, 2, 3):
            rotated = torch.where((k == quarter).view(b, 1, 1, 1), torch.rot90(x, quarter, dims=(2, 3)), rotated)
        x = rotated
    shift = max(1, int(round(h * 0.125)))
    move = chosen()
    dy = torch.randint(-shift, shift + 1, (b,), device=dev) * move
    dx = torch.randint(-shift, shift + 1, (b,), device=dev) * move
    if shift < h and shift < w:  # reflect padding needs pad < size
        x = _shift(x, dx, dy, shift, mode="reflect")
    x = x + torch.randn(b, 1, 1, 1, device=dev, dtype=dt) * 0.2 * chosen().view(b, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = torch.exp2(torch.randn(b, 1, 1, 1, device=dev, dtype=dt) * 0.5 * chosen().view(b, 1, 1, 1))
    x = (x - mean) * contrast + mean
    if c > 1:
        mean = x.mean(dim=1, keepdim=True)
        sat = torch.exp2(torch.randn(b, 1, 1, 1, device=dev, dtype=dt) * chosen().view(b, 1, 1, 1))
        x = (x - mean) * sat + mean
    return x


class AdaptiveAugment:
    """The ADA controller: steers ``p`` with the sign of D's outputs on real images.

    ``r_t = E[sign(D(real))]`` near 1 means D is confidently right on every training image, i.e.
    it overfits; ``p`` then rises by ``batch × interval / speed_images`` every ``interval`` steps,
    and falls by the same amount when ``r_t`` is below the target. Under DDP the sums are taken
    over all ranks (the global batch), so every rank holds the same ``p``, as in StyleGAN2-ADA.

    Args:
        target: target value of ``r_t`` (0.6 in StyleGAN2-ADA).
        interval: D steps between adjustments (4 in StyleGAN2-ADA).
        speed_images: images for ``p`` to go from 0 to 1 (ADA's ``ada_kimg`` × 1000).
        p: initial probability.
        p_max: upper bound of ``p``.
    """

    def __init__(self, target: float = 0.6, interval: int = 4, speed_images: int = 100_000,
                 p: float = 0.0, p_max: float = 1.0) -> None:
        self.target = target
        self.interval = interval
        self.speed_images = speed_images
        self.p = float(p)
        self.p_max = p_max
        self.rt = float("nan")
        self._sign_sum = 0.0
        self._count = 0
        self._steps = 0
        self._images = 0

    def accumulate(self, d_real: torch.Tensor) -> None:
        """Record D's outputs on (augmented) real images of one D step (of every DDP rank)."""
        logits = d_real.detach().float()
        sign_sum, count, images = _summed_over_ranks(float(torch.sign(logits).sum()), logits.numel(),
                                                     int(logits.shape[0]), logits.device)
        self._sign_sum += sign_sum
        self._count += count
        self._images += images
        self._steps += 1
        if self._steps >= self.interval:
            self._adjust()

    def _adjust(self) -> None:
        self.rt = self._sign_sum / max(self._count, 1)
        adjust = math.copysign(1.0, self.rt - self.target) * self._images / self.speed_images
        self.p = float(min(max(self.p + adjust, 0.0), self.p_max))
        self._sign_sum, self._count, self._steps, self._images = 0.0, 0, 0, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ada_augment(x, self.p)

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "rt": self.rt, "sign_sum": self._sign_sum, "count": self._count,
                "steps": self._steps, "images": self._images}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = float(state["p"])
        self.rt = float(state.get("rt", float("nan")))
        self._sign_sum = float(state.get("sign_sum", 0.0))
        self._count = int(state.get("count", 0))
        self._steps = int(state.get("steps", 0))
        self._images = int(state.get("images", 0))


class Augmenter:
    """The augmentation a family applies before D, built from an :class:`AugmentConfig`."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self.mode = cfg.mode
        self.policy = cfg.policy
        self.ada = AdaptiveAugment(cfg.ada_target, cfg.ada_interval, cfg.ada_speed_images,
                                   cfg.ada_p_init, cfg.ada_p_max) if cfg.mode == "ada" else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "diffaugment":
            return diff_augment(x, self.policy)
        if self.ada is not None:
            return self.ada(x)
        return x

    def observe_real(self, d_real: torch.Tensor) -> None:
        """Feed D(real) of a D step to the ADA controller (no-op for other modes)."""
        if self.ada is not None:
            self.ada.accumulate(d_real)

    def metrics(self) -> dict[str, float]:
        if self.ada is None:
            return {}
        out = {"aug/p": self.ada.p}
        if math.isfinite(self.ada.rt):
            out["aug/rt"] = self.ada.rt
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.ada.state_dict() if self.ada is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.ada is not None and state:
            self.ada.load_state_dict(state)
