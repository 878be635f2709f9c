"""Quality of a 2D GAN family's CPU preset within a time budget, next to the real-vs-real floor.

    python benchmarks/quality_gan2d.py --family sagan|stylegan2 --data DIR [--ref DIR] [--minutes 120]
        [--config FILE] --json OUT.json [--runs-dir DIR] [--fid-every-minutes 5] [--num-samples 300]

1. Trains ``configs/cpu/<family>.yaml`` (or ``--config``) on DIR through the CLI
   (``medgen train``), with in-training FID/KID every ~``--fid-every-minutes`` (the step interval
   comes from a short timing of the step on this machine); after ``--minutes`` of wall time the
   run is stopped with SIGINT (it saves ``latest.pt``; ``best.pt`` holds the best FID so far).
2. Samples ``--num-samples`` images from ``best.pt`` (``medgen sample``) and scores them against
   DIR with ``medgen eval fid --kid --prdc``; with ``--ref``, FID(DIR, REF) is the floor: two real sets
   of the same size already differ by it (FID is biased upward below 2,048 images).
3. Writes JSON (``fid``, ``kid``, ``kid_std``, ``precision``, ``recall``, ``density``,
   ``coverage``, ``fid_floor``, ``kid_floor``, ``coverage_floor``, ``minutes``, ``steps``,
   ``curve`` = in-training FID/KID/coverage vs minutes, ``ratio_to_floor``) and a PNG beside it:
   real images (left) and samples (right). Coverage tells a model that draws one mode of the data
   well (low FID at small sample counts) from one that draws all of it.

Data for development: ``python benchmarks/make_gan2d_data.py DATA`` (coins + hubble patches).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _budget import eval_fid, medgen, run_for_minutes  # noqa: E402


def seconds_per_step(family: str, config: Path, data: Path, threads: int) -> float:
    """Wall seconds of a training step here and now (two steps after a warm-up one)."""
    import torch

    from medgen_cli.config.build import build_config
    from medgen_cli.engine.context import TrainContext
    from medgen_cli.families.registry import get_spec

    torch.set_num_threads(threads)
    cfg = build_config(family, config_file=config, overrides=[f"data.root={data}"])
    fam = get_spec(family).family_class()(cfg)
    fam.build(torch.device("cpu"))
    ds = fam.train_dataset()
    batch = torch.stack([ds[i % len(ds)] for i in range(cfg.trainer.batch_size)])
    times = []
    for step in range(3):
        ctx = TrainContext(device=torch.device("cpu"), modules=fam.modules, wrapped=fam.modules,
                           optimizers=fam.optimizers, ema={}, scalers={}, amp_dtype=None,
                           grad_clip=cfg.trainer.grad_clip, global_step=step + 1)
        t0 = time.perf_counter()
        fam.train_step(batch, ctx)
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / 2


def train(args: argparse.Namespace, config: Path, run_dir: Path, fid_every: int) -> tuple[float, float]:
    """Train until ``--minutes`` have passed, then SIGINT. Returns (start time, minutes trained)."""
    cmd = [sys.executable, "-m", "medgen_cli", "train", args.family, "--config", str(config),
           "--set", f"data.root={args.data}", "--set", f"fid.schedule=[[1000000000,{fid_every}]]",
           "--set", f"trainer.val_every={fid_every}", "--set", f"trainer.ckpt_every={max(fid_every, 100)}",
           "--output-dir", str(run_dir.parent.parent), "--name", run_dir.name]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    start = time.time()
    minutes = run_for_minutes(cmd, run_dir.parent / f"{run_dir.name}.train.log", args.minutes, env=env)
    return start, minutes


def curve(run_dir: Path, start: float) -> tuple[list[dict[str, float]], int]:
    """In-training FID/KID records as minutes since start; and the last step logged."""
    points, last_step = [], 0
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return points, last_step
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        last_step = max(last_step, int(rec.get("step", 0)))
        if "val/fid" in rec:
            points.append({"minutes": round((rec["time"] - start) / 60, 2), "step": rec["step"],
                           "fid": rec["val/fid"], "kid": rec.get("val/kid"), "coverage": rec.get("val/coverage")})
    return points, last_step


def stopped_at(run_dir: Path) -> list[int]:
    """The step the trainer reported when it stopped (metrics.jsonl only has every log_every-th)."""
    import re

    log = run_dir / "log.txt"
    text = log.read_text() if log.is_file() else ""
    return [int(m) for m in re.findall(r"(?:stopped|finished) at step (\d+)", text)]


def grid(real: Path, fake: Path, out: Path, n: int = 36, scale: int = 2) -> None:
    """Real (left) and generated (right) images, ``n`` each, side by side."""
    import numpy as np
    from PIL import Image

    def tile(folder: Path) -> np.ndarray:
        files = sorted(folder.glob("*.png"))
        files = [files[i] for i in np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)]
        imgs = [np.asarray(Image.open(f).convert("L")) for f in files]
        cols = int(np.ceil(np.sqrt(len(imgs))))
        h, w = imgs[0].shape
        canvas = np.full((cols * (h + 2), cols * (w + 2)), 255, np.uint8)
        for i, im in enumerate(imgs):
            r, c = divmod(i, cols)
            canvas[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = im
        return canvas

    a, b = tile(real), tile(fake)
    both = np.full((max(a.shape[0], b.shape[0]), a.shape[1] + b.shape[1] + 12), 255, np.uint8)
    both[:a.shape[0], :a.shape[1]] = a
    both[:b.shape[0], a.shape[1] + 12:] = b
    img = Image.fromarray(both)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(out)


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
    config = args.config or REPO / "configs" / "cpu" / f"{args.family}.yaml"
    run_dir = args.runs_dir / args.family / f"{args.family}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)

    sps = seconds_per_step(args.family, config, args.data, args.threads)
    fid_every = max(20, int(args.fid_every_minutes * 60 / sps))
    print(f"{args.family}: {sps:.2f} s/step here now; FID every {fid_every} steps", flush=True)
    start, minutes = train(args, config, run_dir, fid_every)
    points, steps = curve(run_dir, start)
    samples = run_dir / "quality_samples"
    medgen("sample", str(run_dir), "--checkpoint", "best", "--num", str(args.num_samples), "--seed", "0",
           "--batch-size", "50", "--out", str(samples), "--device", "cpu")
    steps = max([steps] + [p["step"] for p in points] + stopped_at(run_dir))
    result: dict[str, Any] = {"family": args.family, "config": str(config), "data": str(args.data),
                              "run": str(run_dir), "minutes": round(minutes, 2), "steps": steps,
                              "seconds_per_step_at_start": round(sps, 3), "num_samples": args.num_samples}
    scored = eval_fid(args.data, samples)
    result.update(fid=scored["fid"], kid=scored["kid"], kid_std=scored["kid_std"],
                  kid_subset_size=scored.get("kid_subset_size"),
                  **{k: scored[k] for k in ("precision", "recall", "density", "coverage")})
    if args.ref is not None:
        floor = eval_fid(args.data, args.ref)
        result.update(fid_floor=floor["fid"], kid_floor=floor["kid"], coverage_floor=floor["coverage"],
                      ratio_to_floor=scored["fid"] / floor["fid"],
                      goal_met=scored["fid"] <= 1.5 * floor["fid"])
    result["curve"] = points
    result["best_step"] = min(points, key=lambda p: p["fid"])["step"] if points else None
    png = args.json.with_suffix(".png")
    grid(args.data, samples, png)
    result["grid"] = str(png)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=2))
    for p in points:
        cov = "" if p["coverage"] is None else f"  coverage {p['coverage']:.3f}"
        print(f"  {p['minutes']:7.1f} min  step {p['step']:6d}  FID {p['fid']:8.2f}{cov}")


if __name__ == "__main__":
    main()
