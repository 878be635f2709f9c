"""The 2D GAN GPU presets (the user's own recipes) on the sets, for an epoch or step budget.

Trained, sampled and scored against each set's real-vs-real floor into ``quality_gan2d``'s table::

    # on a machine with CUDA (the sets carried along: data/gan2d):
    python -m benchmarks.gpu_gan2d [--family sagan|stylegan2|fastgan|all] [--sets a,b] [--sets-root data/gan2d]
        [--epochs 2000 | --steps N] [--minutes M] [--config FILE] [--set key=value ...] --json OUT.json [--runs-dir runs_gpu]
        [--num-samples 300] [--device cuda]
    # where the FID weights are, if the GPU machine has none: score the samples it brought back
    python -m benchmarks.gpu_gan2d --score OUT.json [--sets-root data/gan2d]

For each family (default ``all``) and set: ``configs/gpu/<family>.yaml`` (or ``--config``) is trained
on the set's ``train/`` for ``--epochs`` epochs (steps = epochs × ⌈images / batch⌉; 2,000 epochs as
in the user's scripts; ``--steps`` instead gives steps) or until ``--minutes``, whichever ends first;
``--num-samples`` images from ``best.pt`` (``latest.pt`` if there is none) are copied beside the
JSON (``<json stem>_samples/<family>.<set>/``) and scored against ``train/`` with FID(train, ref) as
the floor, if the FID weights are installed; otherwise the JSON says ``scored: false`` and
``--score`` scores them later. JSON keys and the printed markdown are ``quality_gan2d``'s, with
``device`` (the GPU's name) in place of the CPU model.

Without CUDA it prints one line and exits 0 (``--device cpu`` runs it on the CPU: a smoke test at
tiny sizes, ``--steps 2``).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import gan2d_report as report
from benchmarks import harness
from benchmarks.harness import REPO


def no_cuda_line(device: str) -> str | None:
    """The one line printed when CUDA is asked for and no device is visible."""
    import torch

    if not device.startswith("cuda") or torch.cuda.is_available():
        return None
    return (f"gpu_gan2d: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}): nothing "
            "trained; run it on a GPU machine (or --device cpu for a smoke test)")


def fid_weights_ready() -> bool:
    """Whether ``medgen eval fid`` finds Inception weights here (scoring is skipped otherwise)."""
    from medgen_cli.metrics.fid.errors import FIDWeightsMismatch, FIDWeightsMissing
    from medgen_cli.metrics.fid.weights import resolve_weights

    try:
        resolve_weights()
    except (FIDWeightsMissing, FIDWeightsMismatch):
        return False
    return True


def gpu_preset(family: str) -> Path:
    return REPO / "configs" / "gpu" / f"{family}.yaml"


def run_one(args: argparse.Namespace, family: str, set_name: str, train: Path, ref: Path, scoring: bool,
            floors: report.Floors, single: bool) -> dict[str, Any]:
    config = args.config or gpu_preset(family)
    batch = harness.build(family, config, [f"data.root={train}", *args.set]).trainer.batch_size
    n_images = report.count_images(train)
    steps_per_epoch = math.ceil(n_images / batch)  # the trainer keeps the last short batch
    steps = args.steps or args.epochs * steps_per_epoch
    print(f"== {family} on {set_name}: {n_images} images, {steps_per_epoch} steps/epoch, {steps} steps", flush=True)
    run, trained = report.train_set(family, config, train, [f"trainer.device={args.device}", *args.set],
                                    steps=steps,
                                    minutes=args.minutes, runs_dir=args.runs_dir,
                                    name=f"{family}-{set_name}-{report.stamp()}")
    run.update({"set": set_name, "ref": str(ref), "steps_per_epoch": steps_per_epoch,
                "epochs": round(trained.steps / steps_per_epoch, 1), "budget_epochs": None if args.steps else args.epochs})
    samples = report.sample_and_score(run, trained, train, floors(train, ref) if scoring else None, args.num_samples,
                                      report.png_stem(args.json, family, set_name, single), device=args.device,
                                      scoring=scoring)
    kept = args.json.parent / f"{args.json.stem}_samples" / f"{family}.{set_name}"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(samples, kept)
    run.update(samples=str(kept.relative_to(args.json.parent)), scored=scoring)
    return run


def score_later(args: argparse.Namespace) -> None:
    """Score the samples a GPU run brought back (its JSON's ``runs``) against the sets here."""
    result = json.loads(args.score.read_text())
    sets = report.find_sets(args.sets_root, ",".join(dict.fromkeys(r["set"] for r in result["runs"])))
    floors = report.Floors()
    for run in result["runs"]:
        train, ref = sets[run["set"]]
        report.score(run, train, args.score.parent / run["samples"], floors(train, ref))
        run["scored"] = True
    meta = {k: v for k, v in result.items() if k in ("device", "torch", "cuda", "families", "sets", "budget_steps",
                                                      "budget_epochs", "budget_minutes", "overrides")}
    report.report(args.score, result["runs"], meta, header(meta, result["runs"][0]["num_samples"]))


def header(meta: dict[str, Any], num_samples: int) -> str:
    budget = (f"{meta['budget_steps']} steps" if meta.get("budget_steps") else f"{meta.get('budget_epochs')} epochs")
    if meta.get("budget_minutes"):
        budget += f" / {meta['budget_minutes']:g} min"
    return f"GPU presets (configs/gpu), budget {budget}, {meta.get('device')}, {num_samples} samples vs train/"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=[*report.FAMILIES, "all"], default="all")
    ap.add_argument("--sets", help="comma list of sets under --sets-root (default: every set built there)")
    ap.add_argument("--sets-root", type=Path, default=Path("data/gan2d"))
    ap.add_argument("--epochs", type=int, default=2000, help="epochs of the set (the user's scripts: 2,000)")
    ap.add_argument("--steps", type=int, help="a step budget instead of --epochs")
    ap.add_argument("--minutes", type=float, help="time limit per run (whichever ends first)")
    ap.add_argument("--config", type=Path, help="default: configs/gpu/<family>.yaml (one family only)")
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--json", type=Path, help="required unless --score")
    ap.add_argument("--score", type=Path, help="score the samples of an earlier run's JSON (no training)")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs_gpu"))
    ap.add_argument("--num-samples", type=int, default=300)
    ap.add_argument("--device", default="cuda", help="cuda[:N], or cpu for a smoke test")
    args = ap.parse_args()
    if args.score is not None:
        return score_later(args)
    if args.json is None:
        ap.error("--json is required (or --score)")
    line = no_cuda_line(args.device)
    if line is not None:
        print(line)
        return
    fams = report.families(args.family)
    if args.config is not None and len(fams) > 1:
        ap.error("--config names one family's config; give --family too")
    sets = report.find_sets(args.sets_root, args.sets)
    import torch

    scoring = fid_weights_ready()
    if not scoring:
        print("no FID weights here: training and sampling only; score with "
              f"python -m benchmarks.gpu_gan2d --score {args.json}", flush=True)
    device = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") \
        else f"CPU {harness.cpu_model()} (smoke)"
    floors = report.Floors()
    single = len(fams) * len(sets) == 1
    runs = [run_one(args, family, name, train, ref, scoring, floors, single)
            for family in fams for name, (train, ref) in sets.items()]
    meta = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda, "families": fams,
            "sets": list(sets), "budget_steps": args.steps, "budget_epochs": None if args.steps else args.epochs,
            "budget_minutes": args.minutes, "overrides": args.set}
    report.report(args.json, runs, meta, header(meta, args.num_samples))


if __name__ == "__main__":
    main()
