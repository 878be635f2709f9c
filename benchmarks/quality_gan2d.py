"""Quality of the 2D GAN families' CPU presets on several small sets, each next to its real-vs-real floor.

    python -m benchmarks.quality_gan2d --family fastgan|sagan|stylegan2|all [--sets a,b,c] [--sets-root data/gan2d]
        [--steps N] [--minutes M] [--config FILE] --json OUT.json [--runs-dir DIR]
        [--fid-every-minutes 5 | --fid-every-steps K] [--num-samples 300] [--threads 2]
    # one folder instead of the built sets (as before there were sets):
    python -m benchmarks.quality_gan2d --family fastgan --data DIR [--ref DIR] --minutes 120 --json OUT.json

For each family and each set (default: every set ``make_gan2d_data`` built under ``--sets-root``):

1. Trains ``configs/cpu/<family>.yaml`` (or ``--config``, one family only) on the set's ``train/``
   in this process (:func:`benchmarks.harness.train`, ``--threads`` torch threads) until ``--steps``
   optimizer steps or ``--minutes`` of wall time, whichever ends first (``--steps`` alone: no time
   limit, so machines of different speed compare at equal work; neither: 120 minutes). In-training
   FID/KID every ``--fid-every-steps`` (default with ``--steps``: a 15th of it), else every
   ~``--fid-every-minutes`` (the step interval from a short timing of the step here,
   :func:`benchmarks.harness.calibrate`); ``best.pt`` holds the best FID so far.
2. Samples ``--num-samples`` images from ``best.pt`` (``latest.pt`` if there is none) and scores
   them against ``train/`` with ``medgen eval fid --kid --prdc``; FID(train, ref) is the set's floor
   (two real sets of the same size already differ by it: FID is biased upward below 2,048 images).
3. Writes JSON: ``runs`` (per family × set: ``fid``, ``kid``, ``kid_std``, ``precision``,
   ``recall``, ``density``, ``coverage``, ``fid_floor``, ``kid_floor``, ``coverage_floor``,
   ``ratio_to_floor``, ``coverage_to_floor``, ``goal_met``, ``minutes``, ``steps``,
   ``seconds_per_step`` (median after warm-up), ``seconds_per_step_wall`` (FID evaluations
   included), ``curve`` = in-training FID/KID/coverage vs minutes, ``grid``, ``loss_curves``),
   ``ratios`` ({family: {set: FID/floor}}), ``mean_ratio`` (per family, the mean over sets: choose
   defaults on it, never on one set), ``cpu_model``, ``threads`` and ``table`` (the markdown it
   prints). With one run its keys are also at the top level, as before. PNGs beside it: ``grid``
   (real images left, samples right) and ``.losses.png`` (loss terms, D outputs, gradient norms,
   ADA's p against the step), named ``<json stem>.<family>.<set>.png`` when there are several runs.

Sets: ``python -m benchmarks.make_gan2d_data data/gan2d`` (coins_hubble, retina, textures, faces).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import gan2d_report as report
from benchmarks import harness


def fid_interval(args: argparse.Namespace, family: str, config: Path, train: Path) -> tuple[int, float | None]:
    """Steps between in-training FIDs, and the calibrated s/step when the interval came from minutes."""
    if args.fid_every_steps:
        return args.fid_every_steps, None
    if args.steps:
        return max(20, args.steps // 15), None
    sps = harness.calibrate(family, config, [f"data.root={train}", "fid.enabled=false"], warmup=1, stop=3)
    return max(20, int(args.fid_every_minutes * 60 / sps)), sps


def run_one(args: argparse.Namespace, family: str, set_name: str, train: Path, ref: Path | None,
            floors: report.Floors, single: bool) -> dict[str, Any]:
    config = args.config or harness.cpu_preset(family)
    fid_every, sps0 = fid_interval(args, family, config, train)
    print(f"== {family} on {set_name}: FID every {fid_every} steps"
          + ("" if sps0 is None else f" ({sps0:.2f} s/step here now)"), flush=True)
    overrides = [f"fid.schedule=[[1000000000,{fid_every}]]", f"trainer.val_every={fid_every}",
                 f"trainer.ckpt_every={max(fid_every, 100)}"]
    run, trained = report.train_set(family, config, train, overrides, steps=args.steps, minutes=args.minutes,
                                    runs_dir=args.runs_dir, name=f"{family}-{set_name}-{report.stamp()}")
    run.update({"set": set_name, "ref": None if ref is None else str(ref), "cpu_model": harness.cpu_model(),
                "threads": args.threads,
                "seconds_per_step_at_start": None if sps0 is None else round(sps0, 3)})
    report.sample_and_score(run, trained, train, floors(train, ref), args.num_samples,
                            report.png_stem(args.json, family, set_name, single))
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=[*report.FAMILIES, "all"], required=True)
    ap.add_argument("--sets", help="comma list of sets under --sets-root (default: every set built there)")
    ap.add_argument("--sets-root", type=Path, default=Path("data/gan2d"))
    ap.add_argument("--data", type=Path, help="one folder of training images instead of the sets")
    ap.add_argument("--ref", type=Path, help="with --data: held-out real images, FID(DATA, REF) is the floor")
    ap.add_argument("--steps", type=int, help="step budget (optimizer steps); with --minutes, whichever ends first")
    ap.add_argument("--minutes", type=float, help="time budget (default 120 without --steps, none with it)")
    ap.add_argument("--config", type=Path, help="default: configs/cpu/<family>.yaml (one family only)")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs_quality"))
    ap.add_argument("--fid-every-minutes", type=float, default=5.0)
    ap.add_argument("--fid-every-steps", type=int, help="default with --steps: steps / 15")
    ap.add_argument("--num-samples", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.minutes is None and args.steps is None:
        args.minutes = 120.0
    fams = report.families(args.family)
    if args.config is not None and len(fams) > 1:
        ap.error("--config names one family's config; give --family too")
    if args.data is not None and args.sets:
        ap.error("--data trains on one folder; --sets on built sets: give one of them")
    if args.data is not None:
        sets = {args.data.parent.name if args.data.name == "train" else args.data.name: (args.data, args.ref)}
    else:
        sets = report.find_sets(args.sets_root, args.sets)
    import torch

    torch.set_num_threads(args.threads)
    floors = report.Floors()
    single = len(fams) * len(sets) == 1
    runs = [run_one(args, family, name, train, ref, floors, single)
            for family in fams for name, (train, ref) in sets.items()]
    cpu = harness.cpu_model()
    budget = " / ".join(x for x in (f"{args.steps} steps" if args.steps else "",
                                    f"{args.minutes:g} min" if args.minutes else "") if x)
    header = f"CPU presets, budget {budget}, {cpu}, {args.threads} torch threads, {args.num_samples} samples vs train/"
    meta = {"cpu_model": cpu, "threads": args.threads, "torch": torch.__version__, "families": fams,
            "sets": list(sets), "budget_steps": args.steps, "budget_minutes": args.minutes}
    result = report.report(args.json, runs, meta, header)
    for r in result["runs"]:
        print(f"\n{r['family']} on {r['set']}: in-training FID")
        for p in r["curve"]:
            cov = "" if p["coverage"] is None else f"  coverage {p['coverage']:.3f}"
            print(f"  {p['minutes']:7.1f} min  step {p['step']:6d}  FID {p['fid']:8.2f}{cov}")


if __name__ == "__main__":
    main()
