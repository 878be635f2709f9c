"""pytorch-fid's own FID-InceptionV3 (the exact network), built from a state dict, never downloaded.

medgen runs pytorch-fid's module code unchanged; only where its weights come from differs: a
pytorch-fid-layout state dict (see :mod:`medgen_cli.metrics.fid.weights`) loaded with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.metrics.fid.errors import FIDWeightsMismatch

if TYPE_CHECKING:  # pragma: no cover
    import torch


def fid_inception_template() -> "torch.nn.Module":
    """pytorch-fid's FID-InceptionV3 architecture with untouched (random) weights, no download."""
    import pytorch_fid.inception as pfi

    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


def build_inception(state: dict[str, "torch.Tensor"], output_blocks: list[int], **kwargs: Any) -> Any:
    """pytorch-fid's ``InceptionV3(output_blocks, **kwargs)`` holding ``state``: its own module
    code, but the weights loaded from ``state`` (never a download) and no random initialisation
    first (torchvision's truncated-normal init of 24M weights costs seconds on a CPU).

    Raises:
        FIDWeightsMismatch: ``state`` does not fit pytorch-fid's FID-Inception.
    """
    import pytorch_fid.inception as pfi
    from unittest import mock

    def loaded() -> Any:
        net = fid_inception_template()
        net.load_state_dict(state)
        return net

    with mock.patch.object(pfi, "fid_inception_v3", loaded):
        try:
            return pfi.InceptionV3(output_blocks, **kwargs).eval()
        except (RuntimeError, KeyError, TypeError) as exc:
            raise FIDWeightsMismatch(f"not a pytorch-fid FID-Inception state dict: {str(exc).splitlines()[0]}",
                                     "use pt_inception-2015-12-05-6726825d.pth or default_1.pt") from exc


def load_state_file(path: Path) -> dict[str, Any]:
    """A pytorch-fid-layout weights file as a state dict (``torch.load(weights_only=True)``).

    Raises:
        MedgenError: unreadable; FIDWeightsMismatch: not a state dict.
    """
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MedgenError(f"cannot read FID weights {path}: {type(exc).__name__}: {exc}".splitlines()[0],
                          "use pytorch-fid's pt_inception-2015-12-05-6726825d.pth") from exc
    if not isinstance(state, dict):
        raise FIDWeightsMismatch(f"FID weights {path} are not a state dict", "use pytorch-fid's weights file")
    return state


def inception_for_dims(path: Path, dims: int) -> Any:
    """pytorch-fid's ``InceptionV3`` whose output is the ``dims``-feature block, holding the
    weights in ``path`` (a pytorch-fid-layout state dict)."""
    import pytorch_fid.inception as pfi

    return build_inception(load_state_file(path), [pfi.InceptionV3.BLOCK_INDEX_BY_DIM[dims]])


def pool_features(state: dict[str, "torch.Tensor"], x: "torch.Tensor") -> np.ndarray:
    """Pool3 features of ``x`` ([N, 3, 299, 299] in [-1, 1]) through pytorch-fid's blocks built
    from ``state`` (no resize: 299² input is what both layouts take)."""
    import torch

    model = build_inception(state, [3], resize_input=False, normalize_input=False)
    with torch.inference_mode():
        return model(x)[0].flatten(1).double().numpy()
