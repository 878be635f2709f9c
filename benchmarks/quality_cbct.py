"""dif-gaussian vs FDK vs SIRT on held-out CT volumes after a time-budgeted training on others.

Run by hand from the repository root (2 CPU cores are enough at the default 32³)::

    python -m benchmarks.make_mni_ct --out data/mni-ct            # or any folders of HU NIfTIs
    python -m benchmarks.quality_cbct --train data/mni-ct/train --test data/mni-ct/test \\
        --geometry data/mni-ct/geometry.yaml --views 6,10 --minutes 30 --json quality_cbct.json
    python -m benchmarks.quality_cbct --synthetic 48 --views 6,8,10 --steps 600 --json phantoms.json

Steps: ``make-cbct`` with ``--poses`` (train: many posed copies, 1/8 of the volumes as val; test:
a few posed copies with another seed) — or, with ``--synthetic N``, N of medgen's HU phantoms
(80/10/10 % train/val/test, no poses) instead of ``--train``/``--test`` —, one dif-gaussian trained
on all view counts at once with a cosine schedule sized to the time budget (the step rate is
measured by a short calibration run first, :func:`benchmarks.harness.calibrate`), then every
method is scored on the test cases with ``medgen eval recon``'s library call.

Output JSON: ``{"6": {"model": {"psnr", "ssim", "s_per_case"}, "fdk": {...}, "sirt": {...}}, ...,
"training": {...}}``; times are mean seconds per case on this machine (say how loaded it was).
``<json>.png``: PSNR per view count and method.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import harness
from benchmarks.harness import REPO


def make_data(args: argparse.Namespace, work: Path, geo: object) -> tuple[Path, Path]:
    from medgen_cli.data import cbct
    from medgen_cli.data.cbct.poses import PoseSpec

    if args.synthetic:
        data, t = work / "data-synthetic", time.perf_counter()
        cbct.make_cbct(cbct.synthetic_sources(args.synthetic, geo, seed=args.seed), data, geo, (0.8, 0.1, 0.1),
                       is_hu_grid=True)
        print(f"data: {args.synthetic} phantoms in {time.perf_counter() - t:.0f}s", flush=True)
        return data, data / "test"
    if args.train is None or args.test is None:
        raise SystemExit("give --train and --test (folders of HU NIfTI volumes), or --synthetic N")
    pose = dict(rotation=args.pose_rotation, scale=(0.9, 1.1), shift=0.05, flip="x")
    train, test = work / "data-train", work / "data-test"
    t = time.perf_counter()
    s = cbct.make_cbct(cbct.nifti_sources(args.train), train, geo, (0.875, 0.125, 0.0), seed=args.seed,
                       poses=PoseSpec(copies=args.poses, **pose))
    s2 = cbct.make_cbct(cbct.nifti_sources(args.test), test, geo, (0.0, 0.0, 1.0), seed=args.seed + 1,
                        poses=PoseSpec(copies=args.test_poses, **pose))
    print(f"data: {len(s['split'])} train/val cases, {len(s2['split'])} test cases "
          f"({s['written'] + s2['written']} written) in {time.perf_counter() - t:.0f}s", flush=True)
    return train, test / "test"


def overrides(args: argparse.Namespace, data: Path, runs: Path, name: str, steps: int,
              every: int | None = None) -> list[str]:
    c = args.width
    every = every or max(steps // 8, 1)
    views = sorted(int(v) for v in args.views.split(","))
    return [
        f"data.root={data}", f"output_dir={runs}", f"name={name}", "trainer.device=cpu",
        f"data.num_views={json.dumps(list(range(views[0], views[-1] + 1)))}", "data.view_sampling=even",
        f"data.points_per_case={args.points}", f"data.val_resolution={args.size}",
        f"trainer.batch_size={args.batch}", f"trainer.max_steps={steps}", f"trainer.val_every={every}",
        f"trainer.ckpt_every={every}", "trainer.log_every=25", "trainer.image_every=1000000",
        "trainer.lr_schedule.kind=cosine", "trainer.lr_schedule.min_lr_ratio=0.02", "trainer.grad_clip=1.0",
        f"model.encoder_channels=[{c}, {2 * c}, {4 * c}]", f"model.view_feature_dim={2 * c}", "model.grid_size=8",
        f"model.gaussian_feature_dim={2 * c}", f"model.head_hidden={4 * c}",
        f"model.decoder_channels=[{4 * c}, {4 * c}, {2 * c}, {c}, 1]",
        f"model.fdk_channels={json.dumps([int(x) for x in args.fdk_channels.split(',')] if args.fdk_channels else [])}",
        f"model.fdk_features={2 * c}", f"model.output={args.output}", f"model.carve_threshold={args.carve}",
        "optimizer.kind=adam", f"optimizer.lr={args.lr}",
    ]


def steady_rate(args: argparse.Namespace, data: Path, runs: Path) -> float:
    """Steps per second between steps 20 and 60 of a throw-away run: the first steps pay for
    imports, data caching and allocator warm-up, so timing a whole short run underestimates the
    rate several times over (10 steps: 0.58/s vs 2.9/s)."""
    rate = 1.0 / harness.calibrate("dif-gaussian", None, overrides(args, data, runs, "calibration", 60, every=10**6),
                                   warmup=20, stop=60)
    print(f"calibration: {rate:.2f} steps/s (steps 20-60)", flush=True)
    return rate


def train(args: argparse.Namespace, data: Path, work: Path) -> tuple[Path, dict[str, float]]:
    runs = work / "runs"
    run = runs / "dif-gaussian" / "model"
    if (run / "checkpoints" / "latest.pt").is_file():
        print(f"reusing {run}", flush=True)
        return run, json.loads((work / "training.json").read_text())
    steps = args.steps
    if steps is None:  # measure the steady step rate on this (possibly loaded) machine, then size the run
        steps = max(int(steady_rate(args, data, runs) * args.minutes * 60 * 0.9), 10)  # 10%: validation, checkpoints
        print(f"calibration: {steps} steps for {args.minutes} min", flush=True)
    trained = harness.train(harness.build("dif-gaussian", None, overrides(args, data, runs, "model", steps)))
    info = {"steps": steps, "minutes": trained.minutes}
    (work / "training.json").write_text(json.dumps(info))
    print(f"training: {steps} steps in {info['minutes']:.1f} min", flush=True)
    return run, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=None, help="folder of HU NIfTI volumes to train on")
    ap.add_argument("--test", type=Path, default=None, help="folder of other HU NIfTI volumes to test on")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="instead of --train/--test: N synthetic HU phantoms (10%% of them the test cases)")
    ap.add_argument("--views", default="6,10", help="view counts to score (the model trains on the whole range)")
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget")
    ap.add_argument("--steps", type=int, default=None, help="train exactly this many steps instead")
    ap.add_argument("--size", type=int, default=32, help="voxels per side (detector N²)")
    ap.add_argument("--geometry", type=Path, default=None, help="geometry YAML (default: configs/cbct_geometry.yaml)")
    ap.add_argument("--json", type=Path, required=True, help="where to write the results")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "quality-cbct", help="data and run folder")
    ap.add_argument("--poses", type=int, default=12, help="posed copies per training volume")
    ap.add_argument("--test-poses", type=int, default=2, help="posed copies per test volume")
    ap.add_argument("--pose-rotation", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=8, help="base channels c: UNet [c, 2c, 4c], features 2c")
    ap.add_argument("--fdk-channels", default="8,16,32", help="FDK UNet channels ('' = the paper's model)")
    ap.add_argument("--output", default="sigmoid", choices=["sigmoid", "linear"])
    ap.add_argument("--carve", type=float, default=1e-3, help="visual-hull threshold (0 = off)")
    ap.add_argument("--points", type=int, default=2000, help="query points per case per step")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--sirt-iterations", type=int, default=50)
    args = ap.parse_args()

    import torch

    from medgen_cli.engine.recon import evaluate_recon
    from medgen_cli.data.cbct.geometry import load_geometry

    torch.set_num_threads(max(1, torch.get_num_threads()))
    geo = load_geometry(str(args.geometry) if args.geometry else str(REPO / "configs" / "cbct_geometry.yaml"))
    geo = geo.scaled(args.size)
    args.work.mkdir(parents=True, exist_ok=True)
    data, test = make_data(args, args.work, geo)
    run, info = train(args, data, args.work)
    results: dict[str, object] = {"training": {**info, "size": args.size, "test_cases": len(list(test.glob("*.h5")))}}
    for views in [int(v) for v in args.views.split(",")]:
        row = {}
        for method in ("model", "fdk", "sirt"):
            res = evaluate_recon(run if method == "model" else None, test, views, method,
                           iterations=args.sirt_iterations, device="cpu")
            m = res["mean"]
            row[method] = {"psnr": m["psnr"], "ssim": m["ssim"], "s_per_case": m["seconds"]}
            print(f"{views:>2} views {method:<6} PSNR {m['psnr']:.2f} SSIM {m['ssim']:.4f} {m['seconds']:.3f}s",
                  flush=True)
        results[str(views)] = row
    harness.write_json(args.json, results)
    psnr = {v: {m: r["psnr"] for m, r in results[v].items()} for v in args.views.split(",")}  # type: ignore[union-attr]
    harness.bar_chart(psnr, args.json.with_suffix(".png"), "PSNR (dB)", "views")
    print(f"\n| views | method | PSNR (dB) | SSIM | s / case |  ({results['training']['test_cases']} test cases)")
    print("|---|---|---|---|---|")
    for v in args.views.split(","):
        for method, m in results[v].items():  # type: ignore[union-attr]
            print(f"| {v} | {method} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['s_per_case']:.3f} |")


if __name__ == "__main__":
    main()
