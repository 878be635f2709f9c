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

import functools
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from medgen_cli.io import atomic_path
from medgen_cli.metrics.fid_weights import (checksum_recorded, file_digest, inception_for_dims, weights_cache_dir,
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


def _conv1x1(x: "torch.Tensor", weight: "torch.Tensor", bias: "torch.Tensor", onednn: bool) -> "torch.Tensor":
    """A 1x1 convolution; on the CPU through oneDNN (``torch.mkldnn_convolution``) as the others
    are. torch sends a 1x1 convolution with fewer than 16 images on one thread to its im2col/GEMM
    path instead, which here is ~30% slower (57 vs 78 GFLOP/s at 768->192 channels, 17², 4 images)."""
    import torch

    if onednn:
        return torch.mkldnn_convolution(x, weight, bias, [0, 0], [1, 1], [1, 1], 1)
    return torch.nn.functional.conv2d(x, weight, bias)


@functools.cache
def _classes() -> SimpleNamespace:
    """The modules of the merged network (defined on first use: importing this module does not
    import torch)."""
    import torch

    cat, F = torch.cat, torch.nn.functional

    class Conv1x1(torch.nn.Module):
        """A lone (folded) 1x1 convolution, run by :func:`_conv1x1`."""

        def __init__(self, conv: torch.nn.Conv2d) -> None:
            super().__init__()
            self.weight, self.bias = conv.weight, conv.bias

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return _conv1x1(x, self.weight, self.bias, True)

    class MergedPointwise(torch.nn.Module):
        """The (folded) 1x1 convolutions of an Inception block that all read the block's input,
        as one convolution: the input is read once, and one wide GEMM runs faster than three or
        four narrow ones. The average-pool branch (``pooled``) is pooled *after* its convolution:
        a 1x1 convolution with bias commutes with a 3x3 average pool that divides by the valid
        pixels (``count_include_pad=False``), so the pool runs on 32-192 channels instead of
        192-2048. Returns each branch's activations (ReLU applied), in ``names`` order."""

        def __init__(self, block: torch.nn.Module, names: list[str], pooled: int, onednn: bool) -> None:
            super().__init__()
            convs = [getattr(block, name).conv for name in names]
            self.weight = torch.nn.Parameter(torch.cat([c.weight.detach() for c in convs]), requires_grad=False)
            self.bias = torch.nn.Parameter(torch.cat([c.bias.detach() for c in convs]), requires_grad=False)
            self.sizes = [int(c.weight.shape[0]) for c in convs]
            self.pooled, self.onednn = pooled, onednn
            for name in names:  # now held by the merged weight
                delattr(block, name)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            parts = torch.split(_conv1x1(x, self.weight, self.bias, self.onednn), self.sizes, dim=1)
            return [torch.relu(F.avg_pool2d(p, 3, 1, 1, count_include_pad=False)
                               if i == self.pooled else p) for i, p in enumerate(parts)]

    class Mixed(torch.nn.Module):
        """An Inception block ``b`` whose 1x1 convolutions ``names`` (which all read its input) run
        as one ``MergedPointwise``; ``pooled`` is the average-pool branch among them (-1: none)."""

        names: tuple[str, ...] = ()
        pooled = -1

        def __init__(self, b: torch.nn.Module, onednn: bool) -> None:
            super().__init__()
            self.stem = MergedPointwise(b, list(self.names), self.pooled, onednn)
            self.b = b

    class MixedA(Mixed):  # Mixed_5b-d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1
        names, pooled = ("branch1x1", "branch5x5_1", "branch3x3dbl_1", "branch_pool"), 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            one, five, dbl, pool = self.stem(x)
            b = self.b
            return cat([one, b.branch5x5_2(five), b.branch3x3dbl_3(b.branch3x3dbl_2(dbl)), pool], 1)

    class MixedC(Mixed):  # Mixed_6b-e: 1x1 | 1x1-1x7-7x1 | 1x1-(7x1-1x7)x2 | avgpool-1x1
        names, pooled = ("branch1x1", "branch7x7_1", "branch7x7dbl_1", "branch_pool"), 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            one, seven, dbl, pool = self.stem(x)
            b = self.b
            seven = b.branch7x7_3(b.branch7x7_2(seven))
            dbl = b.branch7x7dbl_5(b.branch7x7dbl_4(b.branch7x7dbl_3(b.branch7x7dbl_2(dbl))))
            return cat([one, seven, dbl, pool], 1)

    class MixedD(Mixed):  # Mixed_7a: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2
        names = ("branch3x3_1", "branch7x7x3_1")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            three, seven = self.stem(x)
            b = self.b
            seven = b.branch7x7x3_4(b.branch7x7x3_3(b.branch7x7x3_2(seven)))
            return cat([b.branch3x3_2(three), seven, F.max_pool2d(x, 3, 2)], 1)

    class MixedE(Mixed):  # Mixed_7c (FID's max-pool variant): 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | maxpool-1x1
        names = ("branch1x1", "branch3x3_1", "branch3x3dbl_1")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            parts = self.stem(x)
            b = self.b
            three = cat([b.branch3x3_2a(parts[1]), b.branch3x3_2b(parts[1])], 1)
            dbl = b.branch3x3dbl_2(parts[2])
            dbl = cat([b.branch3x3dbl_3a(dbl), b.branch3x3dbl_3b(dbl)], 1)
            pool = parts[3] if self.pooled >= 0 else b.branch_pool(F.max_pool2d(x, 3, 1, 1))
            return cat([parts[0], three, dbl, pool], 1)

    class MixedEAvg(MixedE):  # Mixed_7b: the same with an average-pool branch, merged
        names, pooled = MixedE.names + ("branch_pool",), 3

    return SimpleNamespace(Conv1x1=Conv1x1, MergedPointwise=MergedPointwise, MixedA=MixedA, MixedC=MixedC,
                           MixedD=MixedD, MixedE=MixedE, MixedEAvg=MixedEAvg)


def _merged_block(block: "torch.nn.Module", onednn: bool) -> "torch.nn.Module | None":
    """``block`` (one of pytorch-fid's Inception blocks, batch norms folded) with its input-reading
    1x1 convolutions merged (``MergedPointwise``): the same function as the block's own ``forward``
    up to rounding. None for the blocks with at most one such convolution (Mixed_6a, the stem)."""
    from pytorch_fid import inception as pf
    from torchvision.models.inception import InceptionD

    c = _classes()
    kind = {pf.FIDInceptionA: c.MixedA, pf.FIDInceptionC: c.MixedC, InceptionD: c.MixedD,
            pf.FIDInceptionE_1: c.MixedEAvg, pf.FIDInceptionE_2: c.MixedE}.get(type(block))
    return kind(block, onednn) if kind is not None else None


def merge_pointwise(model: "torch.nn.Module", onednn: bool) -> "torch.nn.Module":
    """Merge each Inception block's input-reading 1x1 convolutions (:func:`_merged_block`) and run
    the remaining lone 1x1 convolutions through oneDNN when ``onednn`` (CPU). In place; returned."""
    import torch

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            merged = _merged_block(child, onednn)
            if merged is not None:
                setattr(parent, name, merged)
    if onednn:
        for block in model.modules():
            conv = getattr(block, "conv", None)
            if (isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
                    and conv.padding == (0, 0) and conv.groups == 1 and conv.bias is not None):
                block.conv = _classes().Conv1x1(conv)
    return model


def eager_folded(weights: Path, dims: int, device_type: str = "cpu") -> "torch.nn.Module":
    """pytorch-fid's ``InceptionV3`` for ``dims`` holding ``weights``: batch norms folded, each
    block's 1x1 convolutions merged (on the CPU run by oneDNN), in channels-last memory format."""
    import torch

    model = merge_pointwise(fold_batch_norms(inception_for_dims(weights, dims)), onednn=device_type == "cpu")
    return model.to(memory_format=torch.channels_last)


def _cache_file(weights: Path, dims: int) -> Path:
    import torch

    from medgen_cli.metrics.fid import weights_fingerprint

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
