"""A randomly initialised pytorch-fid FID-Inception state dict (the real weights cannot be
downloaded offline). Shared by the FID tests and ``benchmarks/bench_fid.py``; timing and
equality with pytorch-fid do not depend on the weights' values."""

from __future__ import annotations


def random_fid_inception_state(seed: int = 0) -> dict:
    import torch

    from medgen_cli.metrics.fid.inception import fid_inception_template

    torch.manual_seed(seed)
    net = fid_inception_template()  # pytorch-fid's FID-Inception architecture, no download
    # He-initialised convolutions keep activations from vanishing through ~90 layers, so the
    # features (and the FID values compared) are well above float noise.
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net.state_dict()
