"""Autoencoder training on random patches (``data.patch_size``, the CPU preset's speed-up)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from medgen_cli.data.datasets import random_crop
from medgen_cli.families.autoencoder.config import ImageDataConfig


def test_random_crop_takes_a_window_of_each_sample() -> None:
    x = torch.arange(2 * 8 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8, 8)
    torch.manual_seed(0)
    a = random_crop(x, [4, 4, 4])
    assert a.shape == (2, 1, 4, 4, 4)
    for i in range(2):
        # the crop is a contiguous window: its first voxel fixes it, and it matches the source there
        flat = int(a[i, 0, 0, 0, 0]) - i * 512
        z, y, w = flat // 64, (flat // 8) % 8, flat % 8
        torch.testing.assert_close(a[i, 0], x[i, 0, z:z + 4, y:y + 4, w:w + 4])
    torch.manual_seed(0)
    torch.testing.assert_close(random_crop(x, [4, 4, 4]), a)  # the global RNG (checkpointed) decides
    assert random_crop(x, None) is x and random_crop(x, [8, 8, 8]) is x


@pytest.mark.parametrize("patch", [[4, 4], [32, 4, 4], [0, 4, 4]])
def test_patch_size_is_checked(patch: list[int]) -> None:
    with pytest.raises(ValidationError, match="patch_size"):
        ImageDataConfig(size=[16, 16, 16], patch_size=patch)
