from __future__ import annotations

import math

import torch

from medgen_cli.families.latents import interpolation_path, seeded_normal, slerp


def test_seeded_rows_depend_only_on_their_seed() -> None:
    a = seeded_normal((3, 4), [7, 8, 9])
    b = seeded_normal((3, 4), [9])
    assert a.shape == (3, 3, 4) and torch.equal(a[2], b[0])


def test_slerp_of_orthogonal_unit_vectors_is_analytic() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid, torch.tensor([1.0, 1.0]) / math.sqrt(2))
    assert torch.allclose(slerp(a, b, 1 / 3), torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))


def test_path_endpoints_and_parallel_fallback() -> None:
    a, b = seeded_normal((2, 5), [0, 1])
    for method in ("slerp", "lerp"):
        p = interpolation_path(a, b, 4, method)
        assert p.shape == (4, 2, 5)
        assert torch.allclose(p[0], a, atol=1e-6) and torch.allclose(p[-1], b, atol=1e-6)
    # Parallel vectors: slerp is undefined, the path is the straight line.
    assert torch.allclose(interpolation_path(a, 2 * a, 3, "slerp")[1], 1.5 * a)
