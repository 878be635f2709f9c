"""The metric-name scheme and the loss-term shares."""

from __future__ import annotations

import pytest

from medgen_cli.contract.metric_names import is_train_metric, is_val_metric, shares


def test_shares_are_fractions_of_the_total_magnitude() -> None:
    assert shares({"a": 3.0, "b": -1.0}) == {"share/a": 0.75, "share/b": 0.25}
    assert shares({"a": 0.0}) == {"share/a": 0.0}


@pytest.mark.parametrize("name", ["loss", "loss/g", "loss/d_real", "grad_norm", "grad_norm/d", "d/real",
                                  "d/fake", "share/kl", "aug/p", "stats/fake_voxels"])
def test_scheme_accepts(name: str) -> None:
    assert is_train_metric(name)


@pytest.mark.parametrize("name", ["d_loss", "g_grad_norm", "d_real", "recon_l1", "grad_norm/unet", "d/mean",
                                  "r1/penalty", "pl/length", "Loss/G", "loss/"])
def test_scheme_refuses(name: str) -> None:
    assert not is_train_metric(name)


def test_validation_names() -> None:
    assert all(is_val_metric(n) for n in ("fid", "kid", "psnr", "loss", "stats/fake_voxels"))
    assert not is_val_metric("fake voxels") and not is_val_metric("share/x")
