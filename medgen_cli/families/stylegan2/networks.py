"""StyleGAN2 networks (Karras et al. 2020), compact: equalized learning rate, a mapping network
with a learning-rate multiplier and a tracked mean of w, modulated/demodulated convolutions with
noise injection in a skip generator, and a residual discriminator with minibatch std.

Simplifications against the official code, chosen for small images and readability: bilinear
up/down-sampling instead of FIR-filtered transposed convolutions, and no fused bias-activation
kernels. Behaviour (equalized LR, modulation, demodulation, noise, skips) is the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_GAIN = math.sqrt(2.0)  # keeps the activation variance after leaky ReLU (He gain)
_NOISE_SEED_OFFSET = 1 << 40  # noise seeds differ from the z seeds (medgen_cli.families.latents)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * _GAIN


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: weights stored ~N(0, 1/lr_mul²) and scaled at
    run time, so Adam's per-parameter step sizes are balanced across layers."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(cin), lr_mul, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return lrelu(out) if self.act else out


class EqualConv2d(nn.Module):
    """Conv with equalized learning rate."""

    def __init__(self, cin: int, cout: int, k: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.pad = 1.0 / math.sqrt(cin * k * k), k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)


class MappingNetwork(nn.Module):
    """z → w: pixel-normalized z through ``layers`` equalized-LR MLP layers; tracks E[w]."""

    def __init__(self, z_dim: int, w_dim: int, layers: int, lr_mul: float, w_avg_beta: float) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, act=True) for a, b in zip(dims[:-1], dims[1:])])
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.w_avg_beta = w_avg_beta

    def forward(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        w = self.net(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation != 1.0:
            w = self.w_avg.to(w.dtype).lerp(w, truncation)
        return w


class ModulatedConv2d(nn.Module):
    """Per-sample weights ``W·s`` (style from w), optionally demodulated to unit output variance.

    Computed as StyleGAN2's non-fused path: scale the input channels by the style, run one
    ordinary convolution with the shared weight, scale the output channels by the demodulation
    coefficients. It equals the grouped convolution with per-sample weights (same maths, see
    tests), but on CPU a grouped convolution with ``groups = batch`` and its backward run several
    times slower than one batched convolution.
    """

    def __init__(self, cin: int, cout: int, k: int, w_dim: int, demodulate: bool = True, up: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, k, k))
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)  # styles start at 1 (identity modulation)
        self.scale, self.pad, self.demodulate, self.up = 1.0 / math.sqrt(cin * k * k), k // 2, demodulate, up

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, cin = x.shape[:2]
        style = self.affine(w)                                             # [B, Cin]
        weight = self.weight[0] * self.scale                               # [Cout, Cin, k, k]
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        out = F.conv2d(x * style.view(b, cin, 1, 1).to(x.dtype), weight.to(x.dtype), padding=self.pad)
        if self.demodulate:
            # Σ_{i,k} (W_oik s_i)² = (s²) · (Σ_k W_oik²)ᵀ
            demod = torch.rsqrt(style.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)  # [B, Cout]
            out = out * demod.view(b, -1, 1, 1).to(out.dtype)
        return out

    def grouped_reference(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The same layer as a grouped convolution with per-sample weights (StyleGAN2's fused
        path); kept to test :meth:`forward` against."""
        b, cin, h, wd = x.shape
        style = self.affine(w).view(b, 1, cin, 1, 1)
        weight = self.weight * self.scale * style                          # [B, Cout, Cin, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            h, wd = h * 2, wd * 2
        cout = weight.shape[1]
        out = F.conv2d(x.reshape(1, b * cin, h, wd), weight.reshape(b * cout, cin, *weight.shape[3:]),
                       padding=self.pad, groups=b)
        return out.view(b, cout, h, wd)


class StyledLayer(nn.Module):
    """Modulated conv + per-pixel noise (learned strength, zero at init) + bias + leaky ReLU."""

    def __init__(self, cin: int, cout: int, w_dim: int, resolution: int, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(cout))
        # Fixed noise ("const" noise mode: interpolation frames share it), saved with the weights.
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                noise: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x, w)
        if noise is not None:  # given per-sample maps [B, 1, H, W] (seeded sampling)
            noise = noise.to(x.dtype)
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        return lrelu(x + noise * self.noise_strength + self.bias.view(1, -1, 1, 1))


class ToImage(nn.Module):
    """1x1 modulated conv without demodulation → image channels."""

    def __init__(self, cin: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.view(1, -1, 1, 1)


def channels_at(res: int, base: int, cap: int) -> int:
    return max(1, min(base // res, cap))


class SynthesisNetwork(nn.Module):
    """Learned 4×4 constant → styled layers per resolution; the image is the sum of upsampled
    per-resolution outputs (skip architecture). Consumes ``num_ws`` vectors of w."""

    def __init__(self, w_dim: int, resolution: int, channels: int, base: int, cap: int) -> None:
        super().__init__()
        c4 = channels_at(4, base, cap)
        self.const = nn.Parameter(torch.randn(c4, 4, 4))
        self.layers = nn.ModuleList([StyledLayer(c4, c4, w_dim, 4)])
        self.to_images = nn.ModuleList([ToImage(c4, channels, w_dim)])
        res, cin = 4, c4
        while res < resolution:
            res *= 2
            cout = channels_at(res, base, cap)
            self.layers.append(StyledLayer(cin, cout, w_dim, res, up=True))
            self.layers.append(StyledLayer(cout, cout, w_dim, res))
            self.to_images.append(ToImage(cout, channels, w_dim))
            cin = cout
        self.num_ws = len(self.layers) + 1  # the last ToImage uses one more w

    def seeded_noise(self, seeds: list[int], device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Per-layer noise maps ``[B, 1, R, R]`` for the sample seeds: sample ``i``'s maps come from
        ``seeds[i]`` alone (drawn on the CPU, like its z), so seeded sampling draws fresh noise per
        image, as in training, yet is reproducible and independent of the batch."""
        per_sample = []
        for s in seeds:
            gen = torch.Generator().manual_seed(_NOISE_SEED_OFFSET + int(s))
            per_sample.append([torch.randn(1, 1, *layer.noise_const.shape[2:], generator=gen) for layer in self.layers])
        return [torch.cat(maps).to(device) for maps in zip(*per_sample)]

    def forward(self, ws: torch.Tensor, noise_mode: str = "random",
                noises: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``noises`` (one map per styled layer, from :meth:`seeded_noise`) overrides ``noise_mode``."""
        def noise(j: int) -> torch.Tensor | None:
            return None if noises is None else noises[j]

        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], noise_mode, noise(0))
        img = self.to_images[0](x, ws[:, 1])
        for i, to_image in enumerate(self.to_images[1:]):
            j = 1 + 2 * i
            x = self.layers[j](x, ws[:, j], noise_mode, noise(j))
            x = self.layers[j + 1](x, ws[:, j + 1], noise_mode, noise(j + 1))
            img = F.interpolate(img, scale_factor=2.0, mode="bilinear", align_corners=False) + to_image(x, ws[:, j + 2])
        return img


class Generator(nn.Module):
    """Mapping + synthesis. ``forward(z)`` → image; ``return_ws=True`` also returns the ws (for the
    path-length penalty); ``mix_z`` with ``mix_cutoff`` applies style mixing."""

    def __init__(self, z_dim: int, w_dim: int, resolution: int, channels: int, mapping_layers: int,
                 mapping_lr_mul: float, w_avg_beta: float, base: int, cap: int) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_mul, w_avg_beta)
        self.synthesis = SynthesisNetwork(w_dim, resolution, channels, base, cap)
        self.num_ws = self.synthesis.num_ws

    def ws_from_z(self, z: torch.Tensor, truncation: float = 1.0, mix_z: torch.Tensor | None = None,
                  mix_cutoff: int | None = None) -> torch.Tensor:
        ws = self.mapping(z, truncation).unsqueeze(1).repeat(1, self.num_ws, 1)
        if mix_z is not None and mix_cutoff is not None:
            ws2 = self.mapping(mix_z, truncation).unsqueeze(1)
            ws = torch.cat([ws[:, :mix_cutoff], ws2.expand(-1, self.num_ws - mix_cutoff, -1)], dim=1)
        return ws

    def forward(self, z: torch.Tensor, truncation: float = 1.0, mix_z: torch.Tensor | None = None,
                mix_cutoff: int | None = None, noise_mode: str = "random",
                return_ws: bool = False, noises: list[torch.Tensor] | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        ws = self.ws_from_z(z, truncation, mix_z, mix_cutoff)
        img = self.synthesis(ws, noise_mode, noises)
        return (img, ws) if return_ws else img


class DBlock(nn.Module):
    """Residual block: two 3x3 convs (the second after downsampling) + 1x1 downsampled skip,
    summed with 1/√2 to keep the variance."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = EqualConv2d(cin, cin, 3), EqualConv2d(cin, cout, 3)
        self.skip = EqualConv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        h = lrelu(self.conv2(F.avg_pool2d(lrelu(self.conv1(x)), 2)))
        return (h + skip) / _GAIN


def minibatch_std(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the mean std over groups of samples as one feature map (lets D see diversity)."""
    b, c, h, w = x.shape
    g = max(d for d in range(1, min(group, b) + 1) if b % d == 0)
    y = x.float().view(g, -1, c, h, w)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))   # [B/g]
    y = y.view(-1, 1, 1, 1).repeat(g, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """fromRGB → residual down-blocks to 4×4 → minibatch std → conv → FC → logit."""

    def __init__(self, resolution: int, channels: int, base: int, cap: int, mbstd_group: int = 4) -> None:
        super().__init__()
        self.mbstd_group = mbstd_group
        cin = channels_at(resolution, base, cap)
        self.from_image = EqualConv2d(channels, cin, 1)
        blocks = []
        res = resolution
        while res > 4:
            res //= 2
            cout = channels_at(res, base, cap)
            blocks.append(DBlock(cin, cout))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.conv = EqualConv2d(cin + 1, cin, 3)
        self.fc = EqualLinear(cin * 16, cin, act=True)
        self.out = EqualLinear(cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(lrelu(self.from_image(x)))
        h = lrelu(self.conv(minibatch_std(h, self.mbstd_group)))
        return self.out(self.fc(h.flatten(1))).squeeze(1)
