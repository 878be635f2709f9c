"""A 2D GAN recipe measured at given epochs: train once, sample every requested epoch, score later.

    # train (on a GPU machine, say) and keep 300 samples of each requested epoch in one .npz
    python -m benchmarks.gan2d_recipe train --family sagan --data DIR --epochs 100,200,500 \
        [--config FILE] [--set key=value ...] [--minutes 8] [--device cuda] --out sagan.npz
    # score them (FID/KID against DIR; with --ref, FID(DIR, REF) is the floor) where the FID weights are
    python -m benchmarks.gan2d_recipe score sagan.npz --data DIR [--ref DIR] [--json OUT]

``train`` trains through :func:`benchmarks.harness.train` with FID tracking off, checkpoints at every
epoch boundary that is a multiple of the requested epochs' greatest common divisor, and stops with
SIGINT after ``--minutes`` (epochs not reached are skipped). Each reached epoch's checkpoint (EMA
generator) gives ``--num-samples`` images (:func:`benchmarks.harness.sample`, seeds 0..N-1), stored
as uint8 arrays ``epoch_E`` in the .npz with the run's seconds per step and the data's size. ``score`` writes each array back as PNGs and
runs ``medgen eval fid --kid``. Splitting the two lets the recipe train where there is a GPU but
no FID weights, and be scored here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from functools import reduce
from pathlib import Path

import numpy as np

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import harness
from benchmarks.harness import REPO

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}


def train(args: argparse.Namespace) -> None:
    n_images = sum(1 for p in args.data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    cfg = harness.build(args.family, args.config, [f"data.root={args.data}", *args.set])
    steps_per_epoch = math.ceil(n_images / cfg.trainer.batch_size)  # the trainer keeps the last short batch
    epochs = sorted(int(e) for e in args.epochs.split(","))
    every = reduce(math.gcd, epochs) * steps_per_epoch
    name = f"{args.out.stem}-{time.strftime('%Y%m%d-%H%M%S')}"  # runs started at once differ
    cfg = harness.build(args.family, args.config, [
        f"output_dir={args.runs_dir}", f"name={name}", f"data.root={args.data}", f"trainer.device={args.device}",
        "fid.enabled=false", f"trainer.ckpt_every={every}", f"trainer.keep_last={len(epochs) * 1000}",
        f"trainer.val_every={10 * every}", f"trainer.image_every={10 * every}", *args.set],
        steps=epochs[-1] * steps_per_epoch)
    print(f"{args.family}: {n_images} images, {steps_per_epoch} steps/epoch, checkpoint every {every} steps",
          flush=True)
    run_dir = harness.train(cfg, args.minutes).run
    arrays: dict[str, np.ndarray] = {}
    for epoch in epochs:
        ckpt = run_dir / "checkpoints" / f"step_{epoch * steps_per_epoch}.pt"
        if not ckpt.is_file():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            files, _ = harness.sample(run_dir, args.num_samples, Path(tmp) / "samples", seed=0, checkpoint=ckpt,
                                      device=args.device, fmt="png", batch_size=100)
            arrays[f"epoch_{epoch}"] = stack_pngs(files)
        print(f"  epoch {epoch}: {arrays[f'epoch_{epoch}'].shape[0]} samples", flush=True)
    sps = harness.seconds_per_step(run_dir)
    meta = {"family": args.family, "steps_per_epoch": steps_per_epoch, "n_images": n_images,
            "seconds_per_step": sps, "minutes": args.minutes, "device": args.device, "set": args.set,
            "config": str(args.config) if args.config else f"configs/{args.family}.yaml (defaults)"}
    np.savez_compressed(args.out, meta=json.dumps(meta), **arrays)
    print(json.dumps(meta), flush=True)


def stack_pngs(files: list[Path]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(f).convert("L")) for f in files])


def score(args: argparse.Namespace) -> None:
    from PIL import Image

    data = np.load(args.npz)
    meta = json.loads(str(data["meta"]))
    result: dict = {"meta": meta, "epochs": {}}
    if args.ref is not None:
        floor = harness.eval_fid(args.data, args.ref)
        result["fid_floor"] = floor["fid"]
    keys = sorted((k for k in data.files if k.startswith("epoch_")), key=lambda k: int(k.split("_")[1]))
    for key in keys:
        with tempfile.TemporaryDirectory() as tmp:
            for i, img in enumerate(data[key]):
                Image.fromarray(img).save(Path(tmp) / f"{i:05d}.png")
            res = harness.eval_fid(args.data, tmp)
        result["epochs"][key.split("_")[1]] = {"fid": res["fid"], "kid": res["kid"], "coverage": res["coverage"]}
        ratio = f"  ({res['fid'] / result['fid_floor']:.2f}x floor)" if "fid_floor" in result else ""
        print(f"{meta['family']} epoch {key.split('_')[1]:>5}: FID {res['fid']:8.2f}  KID {res['kid']:.4f}{ratio}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--family", choices=["sagan", "stylegan2", "fastgan"], required=True)
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--epochs", required=True, help="comma list, e.g. 100,200,500")
    t.add_argument("--config", type=Path)
    t.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    t.add_argument("--minutes", type=float, default=8.0)
    t.add_argument("--device", default="cuda")
    t.add_argument("--num-samples", type=int, default=300)
    t.add_argument("--runs-dir", type=Path, default=Path("runs_recipe"))
    t.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("npz", type=Path)
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--ref", type=Path)
    s.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.chdir(REPO)
    train(args) if args.cmd == "train" else score(args)


if __name__ == "__main__":
    main()
