"""Quality of a 2D GAN family's CPU preset within a time budget, next to the real-vs-real floor.

    python -m benchmarks.quality_gan2d --family sagan|stylegan2|fastgan --data DIR [--ref DIR] [--minutes 120]
        [--config FILE] --json OUT.json [--runs-dir DIR] [--fid-every-minutes 5] [--num-samples 300]

1. Trains ``configs/cpu/<family>.yaml`` (or ``--config``) on DIR in this process
   (:func:`benchmarks.harness.train`, ``--threads`` torch threads), with in-training FID/KID every
   ~``--fid-every-minutes`` (the step interval comes from a short timing of the step on this
   machine, :func:`benchmarks.harness.calibrate`); after ``--minutes`` of wall time the run is
   stopped with SIGINT (it saves ``latest.pt``; ``best.pt`` holds the best FID so far).
2. Samples ``--num-samples`` images from ``best.pt`` (as ``medgen sample`` writes them) and scores
   them against DIR with ``medgen eval fid --kid --prdc``; with ``--ref``, FID(DIR, REF) is the
   floor: two real sets of the same size already differ by it (FID is biased upward below 2,048
   images).
3. Writes JSON (``fid``, ``kid``, ``kid_std``, ``precision``, ``recall``, ``density``,
   ``coverage``, ``fid_floor``, ``kid_floor``, ``coverage_floor``, ``minutes``, ``steps``,
   ``curve`` = in-training FID/KID/coverage vs minutes, ``ratio_to_floor``), a PNG beside it
   (``grid``: real images left, samples right) and ``<json>.losses.png`` (``loss_curves``: loss
   terms, D outputs, gradient norms and ADA's p against the step). Coverage tells a model that
   draws one mode of the data well (low FID at small sample counts) from one that draws all of it.

Data for development: ``python -m benchmarks.make_gan2d_data DATA`` (coins + hubble patches).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import harness

#: The panels of ``<json>.losses.png``: title → metrics.jsonl names (a family's missing ones are left out).
LOSS_PANELS = {"losses": ["train/loss/d", "train/loss/g", "train/loss/r1", "train/loss/pl"],
               "D outputs": ["train/d/real", "train/d/fake"],
               "grad norms, ADA p": ["train/grad_norm/d", "train/grad_norm/g", "train/aug/p"]}


def curve(run_dir: Path, start: float) -> list[dict[str, float]]:
    """In-training FID/KID records as minutes since ``start`` (a ``time.time()``)."""
    points: list[dict[str, float]] = []
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return points
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "val/fid" in rec:
            points.append({"minutes": round((rec["time"] - start) / 60, 2), "step": rec["step"],
                           "fid": rec["val/fid"], "kid": rec.get("val/kid"), "coverage": rec.get("val/coverage")})
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=["sagan", "stylegan2", "fastgan"], required=True)
    ap.add_argument("--data", type=Path, required=True, help="training images (the FID reference)")
    ap.add_argument("--ref", type=Path, help="held-out real images: FID(DATA, REF) is the floor")
    ap.add_argument("--minutes", type=float, default=120.0)
    ap.add_argument("--config", type=Path, help="default: configs/cpu/<family>.yaml")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs_quality"))
    ap.add_argument("--fid-every-minutes", type=float, default=5.0)
    ap.add_argument("--num-samples", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    config = args.config or harness.cpu_preset(args.family)
    name = f"{args.family}-{time.strftime('%Y%m%d-%H%M%S')}"
    data = [f"data.root={args.data}"]
    sps = harness.calibrate(args.family, config, [*data, "fid.enabled=false"], warmup=1, stop=3)
    fid_every = max(20, int(args.fid_every_minutes * 60 / sps))
    print(f"{args.family}: {sps:.2f} s/step here now; FID every {fid_every} steps", flush=True)
    cfg = harness.build(args.family, config, [
        *data, f"fid.schedule=[[1000000000,{fid_every}]]", f"trainer.val_every={fid_every}",
        f"trainer.ckpt_every={max(fid_every, 100)}", f"output_dir={args.runs_dir}", f"name={name}"])
    trained = harness.train(cfg, args.minutes)
    run_dir = trained.run
    points = curve(run_dir, trained.started)
    samples = run_dir / "quality_samples"
    harness.sample(run_dir, args.num_samples, samples, seed=0, fmt="png", batch_size=50)
    result: dict[str, Any] = {"family": args.family, "config": str(config), "data": str(args.data),
                              "run": str(run_dir), "minutes": round(trained.minutes, 2), "steps": trained.steps,
                              "seconds_per_step_at_start": round(sps, 3), "num_samples": args.num_samples}
    scored = harness.eval_fid(args.data, samples)
    result.update(fid=scored["fid"], kid=scored["kid"], kid_std=scored["kid_std"],
                  kid_subset_size=scored.get("kid_subset_size"),
                  **{k: scored[k] for k in ("precision", "recall", "density", "coverage")})
    if args.ref is not None:
        floor = harness.eval_fid(args.data, args.ref)
        result.update(fid_floor=floor["fid"], kid_floor=floor["kid"], coverage_floor=floor["coverage"],
                      ratio_to_floor=scored["fid"] / floor["fid"],
                      goal_met=scored["fid"] <= 1.5 * floor["fid"])
    result["curve"] = points
    result["best_step"] = min(points, key=lambda p: p["fid"])["step"] if points else None
    png = args.json.with_suffix(".png")
    harness.image_grid(args.data, samples, png)
    result["grid"] = str(png)
    result["loss_curves"] = str(harness.metric_curves(run_dir, args.json.with_suffix(".losses.png"), LOSS_PANELS))
    harness.write_json(args.json, result)
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=2))
    for p in points:
        cov = "" if p["coverage"] is None else f"  coverage {p['coverage']:.3f}"
        print(f"  {p['minutes']:7.1f} min  step {p['step']:6d}  FID {p['fid']:8.2f}{cov}")


if __name__ == "__main__":
    main()
