"""Process-group setup for torchrun (gloo on CPU, NCCL on GPU) and a resumable sampler."""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def env_world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) when not launched by it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


def init_distributed(device: torch.device) -> None:
    """Join the process group torchrun prepared (no-op for a single process)."""
    _, _, world = env_world()
    if world <= 1 or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average float metrics over ranks (so rank 0 logs the global value)."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


class ResumableSampler(Sampler[int]):
    """Shuffled, rank-sharded indices whose order depends only on (seed, epoch), and which can
    start part-way through an epoch, so a resumed run sees exactly the batches it would have seen.

    Args:
        length: dataset size.
        batch_size: per-process batch size (incomplete last batches are dropped, like
            ``drop_last=True``, so every step has the same shape on every rank).
        seed: run seed.
        rank, world_size: this process's shard.
        shuffle: shuffle per epoch.
    """

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True) -> None:
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def batches_per_epoch(self) -> int:
        return (self.length // self.world_size) // self.batch_size

    def set_position(self, epoch: int, start_batch: int) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        per_rank = self.length // self.world_size
        shard = order[self.rank : per_rank * self.world_size : self.world_size]
        usable = self.batches_per_epoch() * self.batch_size
        return shard[self.start_batch * self.batch_size : usable]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return max(self.batches_per_epoch() - self.start_batch, 0) * self.batch_size


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def sync_buffers(modules: Iterable[torch.nn.Module]) -> None:
    """Average every floating-point buffer of ``modules`` over the ranks.

    DDP synchronises gradients, not buffers (the trainer wraps with ``broadcast_buffers=False``),
    so buffers a forward pass updates from its own rank's data (batch-norm running mean/var,
    StyleGAN2's tracked ``w_avg``) drift apart, and the ranks' models disagree in eval mode and
    after a resume (which restores rank 0's). Buffers the ranks already agree on stay bit-identical
    (``(x + x) / 2 == x``). The average of the ranks' running means is the running mean of the
    global batch exactly (the update is linear); the average of running variances leaves out the
    spread between the shards' means (batch statistics in the forward pass stay per rank, as in
    torch DDP without SyncBatchNorm).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for m in modules:
        for b in m.buffers():
            if b.is_floating_point():
                groups.setdefault((b.dtype, b.device), []).append(b)
    for bufs in groups.values():  # one all-reduce per dtype and device
        flat = torch.cat([b.reshape(-1) for b in bufs])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for b in bufs:
            b.copy_(flat[offset: offset + b.numel()].view_as(b))
            offset += b.numel()
