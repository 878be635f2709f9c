"""The frozen autoencoder's posterior per distinct training volume, computed once.

A latent-diffusion step encodes its batch with an autoencoder that never changes (MONAI's
``encode_stage_2_inputs``: ``mu, sigma = encode(x)``, then ``mu + sigma · ε``). At 64³ that encoding
costs about twice the UNet's forward and backward, on every step, for volumes the run has seen
before. :class:`LatentCache` keeps ``(mu, sigma)`` per distinct input — keyed by a hash of its
values, so every flip of a volume is its own entry and no dataset index has to travel with the
batch — and draws ``ε`` fresh each time from the global generator. The draw fills ``ε`` in
contiguous order; MONAI's ``randn_like(sigma)`` fills it in the memory order of the encoder's
output, which depends on the convolution backend (oneDNN returns a permuted layout with two
threads, a contiguous one with one; torch then also consumes the stream differently), so the
cached and uncached paths draw the same distribution, not the same ε: a run is reproducible
with the cache setting it was trained with. A miss is encoded alone, so a cached value depends on its
volume only, not on which batch met it first: a resumed run, whose cache starts empty, computes
the same values. Memory is bounded (``data.latent_cache_gb``); once full, new inputs are encoded
on every step as before.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import torch

Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def volume_key(x: torch.Tensor) -> bytes:
    """A digest of one volume's values, shape and dtype."""
    t = x.detach().contiguous().cpu()
    h = hashlib.blake2b(digest_size=16)
    h.update(str((tuple(t.shape), t.dtype)).encode())
    h.update(t.view(torch.uint8).numpy().tobytes())  # raw bytes: any dtype, bfloat16 included
    return h.digest()


class LatentCache:
    """``(mu, sigma)`` of the encoder per distinct volume, at most ``max_bytes`` of them."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._store: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def moments(self, encode: Encoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, sigma)`` of every volume in the batch ``x`` ``[B, C, ...]``: stored ones from the
        cache, the others encoded one at a time (and stored while there is room)."""
        if self.max_bytes <= 0:  # off: the whole batch at once, as without a cache
            self.misses += x.shape[0]
            return encode(x)
        mus: list[torch.Tensor] = []
        sigmas: list[torch.Tensor] = []
        for i in range(x.shape[0]):
            key = volume_key(x[i])
            hit = self._store.get(key)
            if hit is None:
                self.misses += 1
                mu, sigma = encode(x[i : i + 1])
                hit = (mu[0].detach(), sigma[0].detach())
                size = sum(t.numel() * t.element_size() for t in hit)
                if self.bytes + size <= self.max_bytes:
                    self._store[key] = hit
                    self.bytes += size
            else:
                self.hits += 1
            mus.append(hit[0])
            sigmas.append(hit[1])
        return torch.stack(mus), torch.stack(sigmas)

    def sample(self, encode: Encoder, x: torch.Tensor) -> torch.Tensor:
        """A posterior sample per volume: ``mu + sigma · ε`` with ``ε`` drawn now, as
        ``AutoencoderKL.sampling`` draws it (``randn_like``: the stacked cached moments are
        contiguous; with the cache off, ``sigma`` is the encoder's own output, so this is MONAI's
        sample exactly)."""
        mu, sigma = self.moments(encode, x)
        return mu + torch.randn_like(sigma) * sigma
