"""The merged Inception blocks of the fast FID network (:mod:`medgen_cli.metrics.fid.fast`).

Each Inception block's (folded) 1x1 convolutions that all read the block's input run as one
convolution; on the CPU the lone 1x1 convolutions run through oneDNN as the others do. This
module imports torch when imported: :mod:`~medgen_cli.metrics.fid.fast` imports it only when it
builds the network.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, onednn: bool) -> torch.Tensor:
    """A 1x1 convolution; on the CPU through oneDNN (``torch.mkldnn_convolution``) as the others
    are. torch sends a 1x1 convolution with fewer than 16 images on one thread to its im2col/GEMM
    path instead, which here is ~30% slower (57 vs 78 GFLOP/s at 768->192 channels, 17², 4 images)."""
    if onednn:
        return torch.mkldnn_convolution(x, weight, bias, [0, 0], [1, 1], [1, 1], 1)
    return torch.nn.functional.conv2d(x, weight, bias)


class Conv1x1(torch.nn.Module):
    """A lone (folded) 1x1 convolution, run by :func:`conv1x1`."""

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv1x1(x, self.weight, self.bias, True)


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
        parts = torch.split(conv1x1(x, self.weight, self.bias, self.onednn), self.sizes, dim=1)
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
        return torch.cat([one, b.branch5x5_2(five), b.branch3x3dbl_3(b.branch3x3dbl_2(dbl)), pool], 1)


class MixedC(Mixed):  # Mixed_6b-e: 1x1 | 1x1-1x7-7x1 | 1x1-(7x1-1x7)x2 | avgpool-1x1
    names, pooled = ("branch1x1", "branch7x7_1", "branch7x7dbl_1", "branch_pool"), 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one, seven, dbl, pool = self.stem(x)
        b = self.b
        seven = b.branch7x7_3(b.branch7x7_2(seven))
        dbl = b.branch7x7dbl_5(b.branch7x7dbl_4(b.branch7x7dbl_3(b.branch7x7dbl_2(dbl))))
        return torch.cat([one, seven, dbl, pool], 1)


class MixedD(Mixed):  # Mixed_7a: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2
    names = ("branch3x3_1", "branch7x7x3_1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three, seven = self.stem(x)
        b = self.b
        seven = b.branch7x7x3_4(b.branch7x7x3_3(b.branch7x7x3_2(seven)))
        return torch.cat([b.branch3x3_2(three), seven, F.max_pool2d(x, 3, 2)], 1)


class MixedE(Mixed):  # Mixed_7c (FID's max-pool variant): 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | maxpool-1x1
    names = ("branch1x1", "branch3x3_1", "branch3x3dbl_1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.stem(x)
        b = self.b
        three = torch.cat([b.branch3x3_2a(parts[1]), b.branch3x3_2b(parts[1])], 1)
        dbl = b.branch3x3dbl_2(parts[2])
        dbl = torch.cat([b.branch3x3dbl_3a(dbl), b.branch3x3dbl_3b(dbl)], 1)
        pool = parts[3] if self.pooled >= 0 else b.branch_pool(F.max_pool2d(x, 3, 1, 1))
        return torch.cat([parts[0], three, dbl, pool], 1)


class MixedEAvg(MixedE):  # Mixed_7b: the same with an average-pool branch, merged
    names, pooled = MixedE.names + ("branch_pool",), 3


def merged_block(block: torch.nn.Module, onednn: bool) -> torch.nn.Module | None:
    """``block`` (one of pytorch-fid's Inception blocks, batch norms folded) with its input-reading
    1x1 convolutions merged (``MergedPointwise``): the same function as the block's own ``forward``
    up to rounding. None for the blocks with at most one such convolution (Mixed_6a, the stem)."""
    from pytorch_fid import inception as pf
    from torchvision.models.inception import InceptionD

    kind = {pf.FIDInceptionA: MixedA, pf.FIDInceptionC: MixedC, InceptionD: MixedD,
            pf.FIDInceptionE_1: MixedEAvg, pf.FIDInceptionE_2: MixedE}.get(type(block))
    return kind(block, onednn) if kind is not None else None


def merge_pointwise(model: torch.nn.Module, onednn: bool) -> torch.nn.Module:
    """Merge each Inception block's input-reading 1x1 convolutions (:func:`merged_block`) and run
    the remaining lone 1x1 convolutions through oneDNN when ``onednn`` (CPU). In place; returned."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            merged = merged_block(child, onednn)
            if merged is not None:
                setattr(parent, name, merged)
    if onednn:
        for block in model.modules():
            conv = getattr(block, "conv", None)
            if (isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
                    and conv.padding == (0, 0) and conv.groups == 1 and conv.bias is not None):
                block.conv = Conv1x1(conv)
    return model
