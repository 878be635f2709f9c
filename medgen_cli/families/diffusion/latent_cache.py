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
with the cache setting it was trained with. Misses are encoded in chunks of exactly
:data:`MISS_CHUNK` volumes (the last one padded with zeros): a convolution computes each item of
a batch of fixed size the same way wherever it sits and whatever sits beside it, so a cached value
depends on its volume only, not on which batch met it first, and a resumed run, whose cache starts
empty, computes the same values. Not one at a time: torch runs a batch of one through a slower
convolution path (a 32³ volume: 0.56–0.70 s alone, 0.07 s per volume in a pair, one thread), whose
scratch buffers also grew the process by ~6 MB per miss (8.8 GB after ~1,000 flipped volumes).
Memory is bounded (``data.latent_cache_gb``); once full, new inputs are encoded
on every step as before.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import torch

Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

#: Volumes per encoder call for cache misses (see the module docstring).
MISS_CHUNK = 2


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
        cache, the others encoded in chunks of :data:`MISS_CHUNK` (and stored while there is room)."""
        if self.max_bytes <= 0:  # off: the whole batch at once, as without a cache
            self.misses += x.shape[0]
            return encode(x)
        keys = [volume_key(v) for v in x]
        found: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        missing: dict[bytes, list[int]] = {}  # a volume twice in one batch is encoded once
        for i, key in enumerate(keys):
            hit = self._store.get(key)
            if hit is None:
                missing.setdefault(key, []).append(i)
            else:
                self.hits += 1
                found[i] = hit
        todo = list(missing.values())
        for start in range(0, len(todo), MISS_CHUNK):
            chunk = todo[start:start + MISS_CHUNK]
            batch = x[[rows[0] for rows in chunk]]
            if len(chunk) < MISS_CHUNK:
                batch = torch.cat([batch, batch.new_zeros((MISS_CHUNK - len(chunk), *batch.shape[1:]))])
            mu, sigma = encode(batch)
            for j, rows in enumerate(chunk):
                self.misses += len(rows)
                # clone: a row of the chunk's output would keep the whole output alive
                entry = (mu[j].detach().clone(), sigma[j].detach().clone())
                size = sum(t.numel() * t.element_size() for t in entry)
                if self.bytes + size <= self.max_bytes:
                    self._store[keys[rows[0]]] = entry
                    self.bytes += size
                for i in rows:
                    found[i] = entry
        return torch.stack([found[i][0] for i in range(len(keys))]), torch.stack([found[i][1] for i in range(len(keys))])

    def sample(self, encode: Encoder, x: torch.Tensor) -> torch.Tensor:
        """A posterior sample per volume: ``mu + sigma · ε`` with ``ε`` drawn now, as
        ``AutoencoderKL.sampling`` draws it (``randn_like``: the stacked cached moments are
        contiguous; with the cache off, ``sigma`` is the encoder's own output, so this is MONAI's
        sample exactly)."""
        mu, sigma = self.moments(encode, x)
        return mu + torch.randn_like(sigma) * sigma
