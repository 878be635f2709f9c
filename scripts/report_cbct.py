"""PSNR/SSIM of dif-gaussian vs FDK vs SIRT at 6/8/10 views on held-out synthetic volumes.

Run by hand (CPU is fine at the default 32³)::

    OMP_NUM_THREADS=2 python scripts/report_cbct.py --out runs/cbct-report

It makes phantoms with ``medgen data make-cbct``'s library function (resumable), trains one
dif-gaussian on all three view counts (reused if the run exists), evaluates every method on the
test split with ``medgen eval recon``'s library call (``engine.recon.evaluate_recon``) and prints a markdown table (also written to
``OUT/report.json``). Times are the mean seconds per reconstruction on this machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "cbct-report")
    ap.add_argument("--size", type=int, default=32, help="voxels per side")
    ap.add_argument("--cases", type=int, default=48, help="synthetic phantoms (10%% val, 10%% test)")
    ap.add_argument("--steps", type=int, default=600, help="training steps")
    ap.add_argument("--views", type=int, nargs="+", default=[6, 8, 10])
    ap.add_argument("--methods", nargs="+", default=["model", "fdk", "sirt"], choices=["model", "fdk", "sirt"])
    ap.add_argument("--sirt-iterations", type=int, default=30)
    ap.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--width", type=int, default=8, help="base channels c: UNet [c, 2c, 4c], features 2c")
    args = ap.parse_args()

    from medgen_cli.engine.recon import evaluate_recon as evaluate
    from medgen_cli.data import cbct
    from medgen_cli.data.cbct.geometry import CBCTGeometry
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    geo = CBCTGeometry().scaled(args.size)
    data = args.out / "data"
    t = time.perf_counter()
    cbct.make_cbct(cbct.synthetic_sources(args.cases, geo, seed=0), data, geo, (0.8, 0.1, 0.1), is_hu_grid=True)
    print(f"data: {args.cases} phantoms at {args.size}³ in {time.perf_counter() - t:.0f}s", flush=True)

    run = args.out / "runs" / "dif-gaussian" / "report"
    if not (run / "checkpoints" / "latest.pt").is_file():
        c = args.width
        overrides = [
            f"data.root={data}", f"output_dir={args.out / 'runs'}", "name=report",
            f"data.num_views={json.dumps(sorted(args.views))}", "data.points_per_case=2000",
            f"data.val_resolution={args.size}", "trainer.device=cpu", "trainer.batch_size=2",
            f"trainer.max_steps={args.steps}", "trainer.val_every=200", "trainer.ckpt_every=200",
            "trainer.log_every=25", "trainer.optim.schedule=exponential",
            f"trainer.optim.gamma={0.05 ** (1 / args.steps)}",
            f"model.encoder_channels=[{c}, {2 * c}, {4 * c}]", f"model.view_feature_dim={2 * c}", "model.grid_size=8",
            f"model.gaussian_feature_dim={2 * c}", f"model.head_hidden={4 * c}",
            f"model.decoder_channels=[{4 * c}, {4 * c}, {2 * c}, {c}, 1]",
            f"optim.optimizer={args.optimizer}", f"optim.lr={args.lr}",
        ]
        t = time.perf_counter()
        train_from_config(build_config("dif-gaussian", overrides=overrides))
        print(f"training: {args.steps} steps in {time.perf_counter() - t:.0f}s", flush=True)

    results = []
    for views in args.views:
        for method in args.methods:
            res = evaluate(run if method == "model" else None, data / "test", views, method,
                           iterations=args.sirt_iterations, device="cpu")
            res["method"] = "dif-gaussian" if method == "model" else method
            results.append(res)
            m = res["mean"]
            print(f"{views:>2} views {res['method']:<13} PSNR {m['psnr']:.2f} SSIM {m['ssim']:.4f} "
                  f"{m['seconds']:.2f}s", flush=True)
    (args.out / "report.json").write_text(json.dumps(results, indent=2))
    n = len(results[0]["cases"])
    print(f"\n| views | method | PSNR (dB) | SSIM | s / volume |  ({n} held-out {args.size}³ phantoms)")
    print("|---|---|---|---|---|")
    for r in results:
        m = r["mean"]
        print(f"| {r['views']} | {r['method']} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['seconds']:.2f} |")


if __name__ == "__main__":
    main()
