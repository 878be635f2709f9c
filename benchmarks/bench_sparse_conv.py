"""Sparse convolution forward+backward on CPU: medgen's torch backend vs MinkowskiEngine.

Same coordinates (64³ grid, ~5% occupancy, batch 2), same weights; each timing builds the sparse
tensor afresh (so both backends compute their kernel maps), then runs a same-coordinate conv
(kernel 3) and a strided conv (kernel 3, stride 2), forward and backward. Goal (issue 15): the
torch backend no slower than MinkowskiEngine (ratio ≤ 1.0); outputs and gradients are compared too.

    python -m benchmarks.bench_sparse_conv [--size 64] [--occupancy 0.05] [--channels 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from medgen_cli.sparse import get_backend, minkowski_status
from medgen_cli.sparse.common import from_dense


def make_input(size: int, occupancy: float, channels: int, batch: int = 2):
    g = torch.Generator().manual_seed(0)
    # Blobby occupancy: smooth noise thresholded at the occupancy quantile (surfaces, not dust).
    noise = torch.nn.functional.avg_pool3d(torch.rand(batch, 1, size, size, size, generator=g), 5, 1, 2)
    thr = torch.quantile(noise.flatten()[:: max(1, noise.numel() // 1_000_000)], 1 - occupancy)
    dense = torch.randn(batch, channels, size, size, size, generator=g)
    dense[:, 0] = dense[:, 0].abs() + 0.1
    return from_dense(dense * (noise > thr), threshold=0.0)


def time_backend(name: str, x, args, state: dict | None) -> tuple[float, dict]:
    sp = get_backend(name)
    torch.manual_seed(0)
    same, strided = sp.Conv(args.channels, args.channels, 3, 1), sp.Conv(args.channels, args.channels, 3, 2)
    if state is not None:
        same.load_state_dict(state["same"])
        strided.load_state_dict(state["strided"])
    times = []
    for i in range(args.repeats + 1):
        xin = x.with_feats(x.feats.detach().clone().requires_grad_(True))
        t0 = time.perf_counter()
        xin = sp.prepare(xin)
        y1, y2 = same(xin), strided(xin)
        (y1.feats.square().sum() + y2.feats.square().sum()).backward()
        if i:  # the first run warms up allocators and thread pools
            times.append(time.perf_counter() - t0)
    result = {"same": same.state_dict(), "strided": strided.state_dict(),
              "outputs": [y.sorted().feats.detach() for y in (y1, y2)],
              "grads": [dict(m.named_parameters())[n].grad.detach().clone() for m in (same, strided)
                        for n in ("kernel", "op.kernel") if n in dict(m.named_parameters())]}
    return sorted(times)[len(times) // 2], result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--occupancy", type=float, default=0.05)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    x = make_input(args.size, args.occupancy, args.channels)
    print(f"{x.num_voxels} voxels ({100 * x.num_voxels / (2 * args.size**3):.1f}% of 2×{args.size}³), "
          f"{args.channels} channels, {torch.get_num_threads()} threads")
    t_torch, state = time_backend("torch", x, args, None)
    print(f"torch backend:     {1e3 * t_torch:.1f} ms (fwd+bwd, median of {args.repeats})")
    ok, why = minkowski_status()
    if not ok:
        print(f"minkowski: skipped — {why}")
        return
    t_me, ref = time_backend("minkowski", x, args, state)
    print(f"MinkowskiEngine:   {1e3 * t_me:.1f} ms")
    same_out = all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(state["outputs"], ref["outputs"]))
    # Kernel gradients accumulate over all repeats in both backends: compare them relative to their size.
    same_grad = all(float((a - b).abs().max()) <= 1e-4 * float(b.abs().max()) for a, b in zip(state["grads"], ref["grads"]))
    print(f"same outputs: {same_out}, same kernel gradients: {same_grad}")
    print(f"torch/minkowski time ratio: {t_torch / t_me:.2f}  (goal ≤ 1.0)")


if __name__ == "__main__":
    main()
