"""FastGAN generator and discriminator (Liu et al. 2021, "Towards Faster and Stabilized GAN
Training for High-fidelity Few-shot Image Synthesis"), sized by resolution.

- **Generator**: z → 4×4 (transposed conv) → up-blocks (nearest ×2, conv, BatchNorm, GLU; every
  other block has two convs) → tanh image. **Skip-layer excitation** (SLE) gates the channels of
  each map of 32² and up with a vector computed from a 4–16× smaller map: gradients reach the
  early layers in one hop, and the small map acts as a global "style" of the large one.
- **Discriminator**: two views of the image (full resolution, and half resolution through a
  separate shallow path), each ending in a 5×5 map of logits. It is also an **auto-encoder**: small
  decoders reconstruct the whole (half-resolution) image from its 8×8 features, and a random
  quadrant from the matching quadrant of its 16×16 features; the reconstruction loss on real
  images forces D to keep describing the image instead of memorising a few cues, which is what
  lets it train on a few hundred images without collapsing.

Every convolution is spectrally normalised, as in the authors' code. Differences from it, for
small grayscale sets on a CPU: noise injection is optional (``noise=True``) and its maps are a
fixed random projection of z (:class:`ZNoise`: z stays the generator's only randomness, so a seed
fixes an image), the reconstructions are compared by L1 (the paper's LPIPS needs downloaded VGG
weights), and the decoders work at half resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

#: Channels per feature-map size relative to the base width (the authors' ``nfc_multi``).
_WIDTH = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}


def width(res: int, base: int, cap: int) -> int:
    """Channels of a ``res``×``res`` map: ``base × _WIDTH[res]``, at most ``cap``, at least 1."""
    return max(1, min(cap, int(base * _WIDTH[res])))


def conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, k, stride, padding, bias=bias))


class GLU(nn.Module):
    """Gated linear unit over channels: the first half times the sigmoid of the second."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * torch.sigmoid(b)


def up_block(cin: int, cout: int, double: bool) -> nn.Sequential:
    """Nearest ×2, then one (or, with ``double``, two) conv3×3 → BatchNorm → GLU."""
    layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest"), conv(cin, cout * 2, 3, 1, 1, bias=False),
                               nn.BatchNorm2d(cout * 2), GLU()]
    if double:
        layers += [conv(cout, cout * 2, 3, 1, 1, bias=False), nn.BatchNorm2d(cout * 2), GLU()]
    return nn.Sequential(*layers)


class ZNoise(nn.Module):
    """The authors' NoiseInjection (``h + strength · noise``, strength learned from 0) with a
    noise map that is a function of z: ``z @ P`` for a fixed Gaussian ``P`` [z_dim, res²] with
    unit columns, so for z ~ N(0, I) each pixel is exactly N(0, 1) and maps of independent z are
    independent. ``P`` is a buffer: saved with the weights, the same on every rank."""

    def __init__(self, z_dim: int, res: int) -> None:
        super().__init__()
        self.res = res
        self.strength = nn.Parameter(torch.zeros(()))
        proj = torch.randn(z_dim, res * res)
        self.register_buffer("proj", proj / proj.norm(dim=0, keepdim=True))

    def maps(self, z: torch.Tensor) -> torch.Tensor:
        """Noise maps ``[B, 1, res, res]`` of the latents ``z`` ``[B, z_dim]``."""
        return (z.to(self.proj.dtype) @ self.proj).view(z.shape[0], 1, self.res, self.res)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return h + self.strength * self.maps(z).to(h.dtype)


class NoisyUp(nn.Module):
    """An up-block (:func:`up_block`) with a :class:`ZNoise` after each of its convolutions."""

    def __init__(self, block: nn.Sequential, z_dim: int, res: int) -> None:
        super().__init__()
        self.block = block
        self.noise = nn.ModuleList(ZNoise(z_dim, res) for m in block if isinstance(m, nn.Conv2d))

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        noises = iter(self.noise)
        for layer in self.block:
            h = layer(h)
            if isinstance(layer, nn.Conv2d):
                h = next(noises)(h, z)
        return h


class SkipExcitation(nn.Module):
    """SLE: ``big × sigmoid(f(small))`` where ``f`` pools ``small`` to 4×4, then conv4×4 → SiLU →
    conv1×1: one gate per channel of ``big``, per image."""

    def __init__(self, c_small: int, c_big: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(4), conv(c_small, c_big, 4, bias=False), nn.SiLU(),
                                  conv(c_big, c_big, 1, bias=False), nn.Sigmoid())

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        return big * self.gate(small)


def sle_source(res: int) -> int | None:
    """The map that gates the ``res`` map: 16× smaller (the authors' 4→64, 8→128, 16→256), at
    least 4×4; none below 32²."""
    return max(4, res // 16) if res >= 32 else None


class Generator(nn.Module):
    """z ``[B, z_dim]`` → image ``[B, channels, resolution, resolution]`` in [-1, 1]."""

    def __init__(self, z_dim: int, resolution: int, channels: int, base: int, cap: int, noise: bool = False) -> None:
        super().__init__()
        self.z_dim = z_dim
        c4 = width(4, base, cap)
        self.init = nn.Sequential(spectral_norm(nn.ConvTranspose2d(z_dim, c4 * 2, 4, 1, 0, bias=False)),
                                  nn.BatchNorm2d(c4 * 2), GLU())
        self.sizes = [2 ** i for i in range(3, int(math.log2(resolution)) + 1)]
        self.ups = nn.ModuleList()
        self.sle = nn.ModuleDict()
        cin = c4
        for i, res in enumerate(self.sizes):
            cout = width(res, base, cap)
            double = i % 2 == 0
            block = up_block(cin, cout, double)
            # noise where the authors inject it: the two-conv blocks (8², 32², 128² …)
            self.ups.append(NoisyUp(block, z_dim, res) if noise and double else block)
            src = sle_source(res)
            if src is not None:
                self.sle[str(res)] = SkipExcitation(width(src, base, cap), cout)
            cin = cout
        self.to_image = conv(cin, channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        feats = {4: self.init(z.view(z.shape[0], -1, 1, 1))}
        h = feats[4]
        for res, up in zip(self.sizes, self.ups):
            h = up(h, z.flatten(1)) if isinstance(up, NoisyUp) else up(h)
            src = sle_source(res)
            if src is not None:
                h = self.sle[str(res)](feats[src], h)
            feats[res] = h
        return torch.tanh(self.to_image(h))


class DownBlock(nn.Module):
    """Halve the map: conv4×4/2 → BN → LeakyReLU, then conv3×3 → BN → LeakyReLU, averaged with
    a pooled 1×1 skip (the authors' ``DownBlockComp``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.main = nn.Sequential(conv(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2),
                                  conv(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))
        self.skip = nn.Sequential(nn.AvgPool2d(2), conv(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                                  nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.skip(x)) / 2


class Decoder(nn.Module):
    """8×8 features → ``size``×``size`` image in [-1, 1]: pool to 8×8, then up-blocks (single conv)."""

    def __init__(self, cin: int, channels: int, size: int, base: int, cap: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.AdaptiveAvgPool2d(8)]
        res = 8
        while res < size:
            res *= 2
            cout = width(res, base, cap) // 2 or 1
            blocks.append(up_block(cin, cout, double=False))
            cin = cout
        blocks += [conv(cin, channels, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Discriminator(nn.Module):
    """Image → logits ``[B, 50]`` (two 5×5 maps: full and half resolution). With ``part`` (a
    quadrant index 0–3) also the reconstructions ``(whole, part, small)`` of the image at half
    resolution, its quadrant ``part`` and the half-resolution view, for :func:`recon_targets`."""

    def __init__(self, resolution: int, channels: int, base: int, cap: int) -> None:
        super().__init__()
        self.resolution = resolution
        c_full = width(resolution, base, cap)
        self.stem = nn.Sequential(conv(channels, c_full, 3, 1, 1), nn.LeakyReLU(0.2))
        self.down = nn.ModuleList()
        res, cin = resolution, c_full
        while res > 8:
            res //= 2
            self.down.append(DownBlock(cin, width(res, base, cap)))
            cin = width(res, base, cap)
        c16, c8, c4 = width(16, base, cap), cin, width(4, base, cap)
        self.logits = nn.Sequential(conv(c8, c4, 1, bias=False), nn.BatchNorm2d(c4), nn.LeakyReLU(0.2), conv(c4, 1, 4))
        # The half-resolution path: conv4×4/2 then plain down-blocks to 8×8.
        half = resolution // 2
        c_half = width(half // 2, base, cap)
        small: list[nn.Module] = [conv(channels, c_half, 4, 2, 1), nn.LeakyReLU(0.2)]
        res, cin = half // 2, c_half
        while res > 8:
            res //= 2
            small.append(DownBlock(cin, width(res, base, cap)))
            cin = width(res, base, cap)
        self.small = nn.Sequential(*small)
        self.small_logits = conv(cin, 1, 4)
        self.decode_whole = Decoder(c8, channels, half, base, cap)
        self.decode_part = Decoder(c16, channels, half, base, cap)
        self.decode_small = Decoder(cin, channels, half, base, cap)

    def forward(self, x: torch.Tensor, part: int | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        h = self.stem(x)
        feat16 = h  # the 16×16 map (the stem's output when the images are 16×16)
        for block in self.down:
            h = block(h)
            if h.shape[-1] == 16:
                feat16 = h
        s = self.small(F.avg_pool2d(x, 2))
        logits = torch.cat([self.logits(h).flatten(1), self.small_logits(s).flatten(1)], dim=1)
        if part is None:
            return logits
        recons = (self.decode_whole(h), self.decode_part(quadrant(feat16, part)), self.decode_small(s))
        return logits, recons


def quadrant(x: torch.Tensor, part: int) -> torch.Tensor:
    """Quadrant ``part`` of the maps ``x`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    r, c = divmod(part, 2)
    return x[..., r * h:(r + 1) * h, c * w:(c + 1) * w]


def recon_targets(x: torch.Tensor, part: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What :class:`Discriminator`'s decoders should give back for the images ``x``: the whole image
    at half resolution, quadrant ``part`` at full resolution, and the half-resolution view."""
    whole = F.avg_pool2d(x, 2)
    return whole, quadrant(x, part), whole
