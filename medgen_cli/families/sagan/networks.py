"""SAGAN generator and discriminator (Zhang et al. 2019): residual blocks, spectral norm in both
players, self-attention on a mid-resolution feature map."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn_conv(cin: int, cout: int, k: int = 3) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, k, padding=k // 2))


def channels_at(res: int, resolution: int, base: int, cap: int) -> int:
    """Channels double each time the feature map halves, capped at ``cap``."""
    return min(base * (resolution // res), cap)


class SelfAttention(nn.Module):
    """Self-attention over all positions, added through a learned gate that starts at zero (so
    the network first learns local structure, then non-local dependencies)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query = spectral_norm(nn.Conv2d(channels, inner, 1, bias=False))
        self.key = spectral_norm(nn.Conv2d(channels, inner, 1, bias=False))
        self.value = spectral_norm(nn.Conv2d(channels, max(1, channels // 2), 1, bias=False))
        self.out = spectral_norm(nn.Conv2d(max(1, channels // 2), channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)          # [B, HW, C']
        k = self.key(x).flatten(2)                              # [B, C', HW]
        v = self.value(x).flatten(2)                            # [B, C'', HW]
        attn = torch.softmax(torch.bmm(q, k), dim=-1)           # [B, HW, HW]
        o = torch.bmm(v, attn.transpose(1, 2)).view(b, -1, h, w)
        return x + self.gamma * self.out(o)


class GBlock(nn.Module):
    """BN-ReLU-upsample-conv-BN-ReLU-conv with a 1x1 upsampled skip."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1, self.conv2 = sn_conv(cin, cout), sn_conv(cout, cout)
        self.skip = spectral_norm(nn.Conv2d(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DBlock(nn.Module):
    """act-conv-act-conv-avgpool with a 1x1 pooled skip (the first block skips the first act).
    ``slope`` 0 is SAGAN's ReLU; a positive slope is a LeakyReLU."""

    def __init__(self, cin: int, cout: int, first: bool = False, slope: float = 0.0) -> None:
        super().__init__()
        self.first, self.slope = first, slope
        self.conv1, self.conv2 = sn_conv(cin, cout), sn_conv(cout, cout)
        self.skip = spectral_norm(nn.Conv2d(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.leaky_relu(x, self.slope)
        h = F.avg_pool2d(self.conv2(F.leaky_relu(self.conv1(h), self.slope)), 2)
        return h + self.skip(F.avg_pool2d(x, 2))


class Generator(nn.Module):
    """z → 4×4 → residual up-blocks (attention at ``attention_resolution``) → tanh image."""

    def __init__(self, latent_dim: int, resolution: int, channels: int, base: int, cap: int,
                 attention_resolution: int | None) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.c0 = channels_at(4, resolution, base, cap)
        self.fc = spectral_norm(nn.Linear(latent_dim, self.c0 * 16))
        blocks: list[nn.Module] = []
        res, cin = 4, self.c0
        while res < resolution:
            res *= 2
            cout = channels_at(res, resolution, base, cap)
            blocks.append(GBlock(cin, cout))
            if res == attention_resolution:
                blocks.append(SelfAttention(cout))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), sn_conv(cin, channels), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.c0, 4, 4)
        return self.out(self.blocks(h))


class Discriminator(nn.Module):
    """Image → residual down-blocks (attention at ``attention_resolution``) → sum-pool → logit."""

    def __init__(self, resolution: int, channels: int, base: int, cap: int, attention_resolution: int | None,
                 slope: float = 0.0) -> None:
        super().__init__()
        self.slope = slope
        blocks: list[nn.Module] = []
        res, cin = resolution, channels
        for i in range(int(math.log2(resolution)) - 2):
            cout = channels_at(res // 2, resolution, base, cap)
            blocks.append(DBlock(cin, cout, first=i == 0, slope=slope))
            res //= 2
            if res == attention_resolution:
                blocks.append(SelfAttention(cout))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = spectral_norm(nn.Linear(cin, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.blocks(x), self.slope).sum(dim=(2, 3))
        return self.fc(h).squeeze(1)
