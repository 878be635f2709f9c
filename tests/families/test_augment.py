"""DiffAugment, ADA and the shared GAN losses, against analytic or brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medgen_cli.families.gan2d import losses
from medgen_cli.families.gan2d.augment import (
    AdaptiveAugment,
    Augmenter,
    ada_augment,
    diff_augment,
    diff_color,
    diff_cutout,
    diff_translation,
)
from medgen_cli.families.gan2d.config import AugmentConfig
from medgen_cli.families.gan2d.fid_tracking import fid_every


def _images(b: int = 6, c: int = 1, s: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", ["diff", "ada"])
def test_augment_keeps_shape_and_is_differentiable(op: str, channels: int) -> None:
    x = _images(c=channels).requires_grad_(True)
    y = diff_augment(x) if op == "diff" else ada_augment(x, p=1.0)
    assert y.shape == x.shape and y.dtype == x.dtype
    weight = torch.randn_like(y)
    (y * weight).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_color_on_grayscale_is_brightness_then_contrast() -> None:
    """Saturation must be skipped on one channel: only two random draws, analytic result."""
    x = _images(c=1)
    torch.manual_seed(3)
    out = diff_color(x)
    torch.manual_seed(3)
    brightness = torch.rand(x.shape[0], 1, 1, 1) - 0.5
    contrast = torch.rand(x.shape[0], 1, 1, 1) + 0.5
    y = x + brightness
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, (y - mean) * contrast + mean)


def _shift_ref(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(img)
    h, w = img.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[..., max(-dy, 0):h - max(dy, 0),
                                                                           max(-dx, 0):w - max(dx, 0)]
    return out


def test_translation_is_an_integer_zero_padded_shift() -> None:
    x = _images(b=8, c=2, s=16)
    torch.manual_seed(1)
    y = diff_translation(x).numpy()
    for img, out in zip(x.numpy(), y):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if np.array_equal(out, _shift_ref(img, dy, dx))]
        assert matches, "output is not a shift of at most 1/8 of the size"


def test_cutout_zeroes_one_square_of_at_most_half_size() -> None:
    x = _images(b=8, s=16) + 3.0  # strictly positive so zeros come only from cutout
    y = diff_cutout(x)
    for img, out in zip(x, y):
        zero = (out[0] == 0).numpy()
        assert np.array_equal(out[:, ~torch.from_numpy(zero)], img[:, ~torch.from_numpy(zero)])
        rows, cols = np.where(zero)
        assert zero.sum() > 0
        assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8
        assert zero.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a rectangle


def test_ada_p_zero_is_identity_and_p_one_changes_images() -> None:
    x = _images()
    assert torch.equal(ada_augment(x, 0.0), x)
    torch.manual_seed(0)
    assert not torch.allclose(ada_augment(x, 1.0), x)


def test_controller_arithmetic_and_state_round_trip() -> None:
    ada = AdaptiveAugment(target=0.6, interval=4, speed_images=64)
    for _ in range(3):
        ada.accumulate(torch.ones(8))
    assert ada.p == 0.0  # not adjusted before `interval` steps
    ada.accumulate(torch.ones(8))
    assert ada.p == pytest.approx(4 * 8 / 64)  # r_t = 1 > 0.6: up by batch*interval/speed
    assert ada.rt == 1.0
    ada.accumulate(-torch.ones(8))
    other = AdaptiveAugment(target=0.6, interval=4, speed_images=64)
    other.load_state_dict(ada.state_dict())
    for a in (ada, other):
        for _ in range(3):
            a.accumulate(-torch.ones(8))
    assert ada.p == other.p == pytest.approx(0.0)  # r_t = -1 < 0.6: back down


def _run_toy_ada(overfit: bool, p0: float, steps: int = 60) -> float:
    """Train a small D against fakes; with ``overfit`` the reals are 4 fixed images D can memorise,
    otherwise reals and fakes come from the same distribution and D cannot tell them apart."""
    torch.manual_seed(0)
    d = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    aug = Augmenter(AugmentConfig(mode="ada", ada_speed_images=200, ada_p_init=p0, ada_interval=4))
    fixed = (torch.rand(4, 1, 8, 8) * 2 - 1) * 3  # far from the fakes in energy, whatever the augmentation
    for _ in range(steps):
        real = fixed.repeat(2, 1, 1, 1) if overfit else torch.randn(8, 1, 8, 8) * 0.5
        fake = torch.randn(8, 1, 8, 8) * 0.5
        d_real, d_fake = d(aug(real)).squeeze(1), d(aug(fake)).squeeze(1)
        l_real, l_fake = losses.d_logistic(d_real, d_fake)
        opt.zero_grad()
        (l_real + l_fake).backward()
        opt.step()
        aug.observe_real(d_real)
    return aug.ada.p


def test_ada_p_rises_when_d_overfits_and_falls_otherwise() -> None:
    assert _run_toy_ada(overfit=True, p0=0.0) > 0.5
    assert _run_toy_ada(overfit=False, p0=0.8) < 0.3


def test_augmenter_modes() -> None:
    x = _images()
    assert torch.equal(Augmenter(AugmentConfig(mode="none"))(x), x)
    assert Augmenter(AugmentConfig(mode="diffaugment")).metrics() == {}
    assert Augmenter(AugmentConfig(mode="ada", ada_p_init=0.25)).metrics() == {"aug/p": 0.25}
    with pytest.raises(ValueError):
        AugmentConfig(policy="color,zoom")


def test_r1_penalty_matches_analytic_gradient_norm() -> None:
    a = torch.randn(1, 1, 4, 4)
    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    scale = torch.tensor(2.0, requires_grad=True)
    penalty = losses.r1_penalty((scale * a * x).sum(dim=(1, 2, 3)), x)  # ∇x = scale·a for every sample
    assert float(penalty.detach()) == pytest.approx(float(4.0 * a.square().sum()), rel=1e-5)
    penalty.backward()  # create_graph: the penalty is differentiable w.r.t. D's parameters
    assert scale.grad is not None and float(scale.grad) == pytest.approx(float(4.0 * a.square().sum()), rel=1e-5)


def test_path_length_of_a_scaled_identity_is_the_scale() -> None:
    """images = c·w (one row per w): J = c·I, so ‖Jᵀy‖ with y ~ N(0, I/(H·W)) ≈ c for large H·W."""
    torch.manual_seed(0)
    c = torch.tensor(1.7, requires_grad=True)
    ws = torch.randn(4, 1, 4096, requires_grad=True)
    images = (c * ws).view(4, 1, 64, 64)
    lengths = losses.path_lengths(images, ws)
    assert torch.allclose(lengths, torch.full((4,), 1.7), rtol=0.05)
    lengths.sum().backward()
    assert c.grad is not None and float(c.grad) > 0


def test_bce_label_smoothing_and_hinge_reference() -> None:
    real, fake = torch.randn(16), torch.randn(16)
    l_real, l_fake = losses.d_bce(real, fake, real_label=0.9)
    sig = torch.sigmoid
    ref_real = -(0.9 * torch.log(sig(real)) + 0.1 * torch.log(1 - sig(real))).mean()
    ref_fake = -torch.log(1 - sig(fake)).mean()
    torch.testing.assert_close(l_real, ref_real)
    torch.testing.assert_close(l_fake, ref_fake)
    h_real, h_fake = losses.d_hinge(real, fake)
    torch.testing.assert_close(h_real, torch.clamp(1 - real, min=0).mean())
    torch.testing.assert_close(h_fake, torch.clamp(1 + fake, min=0).mean())


def test_fid_schedule_is_frequent_early_and_sparser_later() -> None:
    schedule = [(100, 10), (500, 50), (1000, 100)]
    assert [fid_every(schedule, s) for s in (1, 100, 101, 500, 501, 5000)] == [10, 10, 50, 50, 100, 100]
