"""The default (fast) FID network on the CPU: pytorch-fid's InceptionV3 with its batch norms folded
into the convolutions, the 1x1 convolutions that read each Inception block's input merged into
one (run by oneDNN, with the average-pool branch pooled after its convolution), traced once to
TorchScript and cached, so later runs start without importing pytorch-fid (and through it
torchvision and ``torch._dynamo``: ~3 s of every cold start here).

The traced module runs exactly the operations of the eager, folded pytorch-fid module (checked
when it is made: equal outputs on a batch of another size), so features do not depend on
whether the cache existed. The cache file (``<cache>/weights/<key>-fid-fast-<dims>-cpu.pt``) is
keyed by the weights' fingerprint, the feature size and the torch version, and loaded only when
its SHA-256 matches the one recorded beside it when medgen wrote it; anything that fails (a torch
without ``torch.jit``, an unwritable cache) falls back to the eager module.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgen_cli.io import atomic_path
from medgen_cli.metrics.fid.inception import inception_for_dims
from medgen_cli.metrics.fid.weights import (checksum_recorded, file_digest, weights_cache_dir, weights_fingerprint,
                                            write_record)

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = 3  # bump when the folded module or its tracing changes


def fold_batch_norms(model: "torch.nn.Module") -> "torch.nn.Module":
    """Fold every eval-mode ``conv -> bn`` pair of pytorch-fid's ``BasicConv2d`` blocks into the
    convolution (torch's ``fuse_conv_bn_eval``: ``w * γ/σ``, ``β - μγ/σ``) and drop the batch norm:
    one pass over each activation instead of two. Same function up to float rounding (features
    ~1e-5 absolute). The model is modified in place and returned."""
    import torch
    from torch.nn.utils import fuse_conv_bn_eval

    for block in model.modules():
        conv, bn = getattr(block, "conv", None), getattr(block, "bn", None)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            block.conv = fuse_conv_bn_eval(conv.eval(), bn.eval())
            block.bn = torch.nn.Identity()
    return model


def eager_folded(weights: Path, dims: int, device_type: str = "cpu") -> "torch.nn.Module":
    """pytorch-fid's ``InceptionV3`` for ``dims`` holding ``weights``: batch norms folded, each
    block's 1x1 convolutions merged (on the CPU run by oneDNN), in channels-last memory format."""
    import torch

    from medgen_cli.metrics.fid.fast_blocks import merge_pointwise

    model = merge_pointwise(fold_batch_norms(inception_for_dims(weights, dims)), onednn=device_type == "cpu")
    return model.to(memory_format=torch.channels_last)


def _cache_file(weights: Path, dims: int) -> Path:
    import torch

    tag = f"{weights_fingerprint(weights)}-f{FORMAT}-torch{torch.__version__.split('+')[0]}"
    return weights_cache_dir() / f"{tag}-fid-fast-{dims}-cpu.pt"


def _load_cached(path: Path) -> Any:
    import torch

    if not checksum_recorded(path):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notices
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception:  # a trace this torch cannot read: rebuild
        return None


def _trace(model: "torch.nn.Module") -> Any:
    """The traced module, or None when tracing is unavailable or does not reproduce ``model``."""
    import torch

    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    check = torch.rand(2, 3, 48, 80, generator=torch.Generator().manual_seed(1))
    x, check = (t.contiguous(memory_format=torch.channels_last) for t in (x, check))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, x, check_trace=False).eval()
            same = all(torch.equal(a, b) for a, b in zip(traced(check), model(check)))
    except Exception:
        return None
    return traced if same else None


def fast_inception(weights: Path, dims: int, device_type: str = "cpu") -> Any:
    """The folded FID network for ``dims`` and a device type, on the CPU. For ``cpu``: the cached
    TorchScript when it is there and intact, else made from pytorch-fid's module (and cached when
    tracing works). Other devices get the eager folded module (start-up matters less there, and
    a CPU trace is not what they run)."""
    if device_type != "cpu":
        return eager_folded(weights, dims, device_type)
    path = _cache_file(weights, dims)
    cached = _load_cached(path)
    if cached is not None:
        return cached
    model = eager_folded(weights, dims, device_type)
    traced = _trace(model)
    if traced is None:
        return model
    try:
        with atomic_path(path, fsync=False) as tmp:
            traced.save(str(tmp))
    except OSError:
        return traced  # an unwritable cache only costs the import next time
    write_record(path.with_suffix(".json"), {"weights": str(weights), "dims": dims, "sha256": file_digest(path)})
    return traced
