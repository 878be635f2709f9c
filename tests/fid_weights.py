"""A randomly initialised pytorch-fid FID-Inception state dict (the real weights cannot be
downloaded offline). Shared by the FID tests and ``benchmarks/bench_fid.py``; timing and
equality with pytorch-fid do not depend on the weights' values."""

from __future__ import annotations


def random_fid_inception_state(seed: int = 0) -> dict:
    import torch
    import pytorch_fid.inception as pfi

    torch.manual_seed(seed)
    # fid_inception_v3()'s architecture without its weight download.
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    # He-initialised convolutions keep activations from vanishing through ~90 layers, so the
    # features (and the FID values compared) are well above float noise.
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net.state_dict()
