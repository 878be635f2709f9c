"""One shape benchmark for every family that generates 3D shapes: 1-NNA / COV / MMD (Chamfer) of
samples against held-out shapes, beside the same numbers for a second real subset.

Run by hand, from the repository root::

    python -m benchmarks.quality_shapes --family sparse-gan --size 32 --json out.json
    python -m benchmarks.quality_shapes --family sparse-gan --dataset anatomy --size 32 --json out.json
    python -m benchmarks.quality_shapes --family sparse-gan --data DIR --minutes 30 --json out.json

``DIR`` holds ``train/`` and ``val/`` NIfTI volumes as ``medgen data convert-h5`` writes them;
without ``--data`` the set is made by ``benchmarks.make_shape_data`` (``--dataset synthetic``: the phantom
classes; ``anatomy``: posed MNI152 surfaces). The family's CPU preset (``configs/cpu/<family>.yaml``)
trains for ``--minutes`` (default 30 for sparse-gan) or ``--steps``, whichever ends first (the
budget ends like a Ctrl-C: ``latest.pt`` is written and the run is an ordinary medgen run).
``--num`` samples of seeds 1000… come from ``best.pt`` through medgen's own sampling (the files
``medgen sample`` writes), and every volume — real or generated — becomes points by the rule of
``medgen eval shapes`` (voxels above ``--threshold``, ``--points`` per shape), in the grid's frame. Generated shapes are compared with the first ``--num`` val shapes (A); the first ``--num``
training shapes (B) against A give the floor a perfect generator reaches with this many shapes.
Writes the JSON and ``<json>.png``: real shapes (left) and generated ones (right) as MIPs.
Training, sampling and the figure go through :mod:`benchmarks.harness`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import harness
from benchmarks.harness import REPO


def _preset(family: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(harness.cpu_preset(family).read_text())


def _common(args: argparse.Namespace, data: Path, name: str, max_steps: int | None) -> list[str]:
    return [f"data.root={data.resolve()}", f"output_dir={args.work / 'runs'}", f"name={name}",
            "trainer.device=cpu", f"trainer.max_steps={max_steps or 10**7}"]


def train_sparse_gan(args: argparse.Namespace, data: Path, minutes: float) -> dict[str, Any]:
    """The CPU preset at ``--size``: its channel lists stay, the generator's first grid scales."""
    preset = _preset("sparse-gan")
    ups = len(preset["generator"]["channels"]) - 1
    if args.size % 2**ups or args.size // 2**ups < 1:
        raise SystemExit(f"--size {args.size} is not a multiple of 2^{ups} (the preset's upsamplings)")
    sets = [*_common(args, data, "bench", args.steps), f"data.voxel_size={args.size}",
            f"generator.init_size={args.size // 2**ups}", *args.set]
    t = harness.train(harness.build("sparse-gan", harness.cpu_preset("sparse-gan"), sets), minutes)
    return {"run": t.run, "steps": t.steps, "minutes": t.minutes, "cpu_minutes": t.cpu_minutes}


#: The autoencoder of the latent-diffusion recipe, on top of the autoencoder CPU preset (whose two
#: levels, a 16³ latent at 32³, were chosen for reconstruction): three levels without attention,
#: a 4× smaller latent per side (f = 4, as MONAI's 3D latent-diffusion tutorial and MAISI), and
#: gradient clipping, which the deeper network needs at the preset's LR. Measured on anatomy and
#: the synthetic classes (docs/diffusion.md, "An 8³ latent"): 6× the diffusion steps per minute and
#: 7× faster sampling than the 16³ latent at a better 1-NNA. ``--ae-set`` overrides come after these.
LATENT_AE_SETS = ("model.channels=[16,32,64]", "model.attention_levels=[false,false,false]", "trainer.grad_clip=1.0")


def fit_ae_steps(args: argparse.Namespace, sets: list[str], minutes: float) -> int:
    """``--ae-steps``, or (``auto``) as many steps as this machine runs in ``minutes`` (a short
    calibration run, 90% of the fit for validation and checkpoints), at most the preset's
    ``trainer.max_steps`` (2,800):
    the cosine schedule then anneals within the stage's minutes on a slow CPU too, where a
    2,800-step schedule cut off by the clock would end at half the learning rate."""
    if args.ae_steps != "auto":
        return int(args.ae_steps)
    rate = harness.calibrate("autoencoder", harness.cpu_preset("autoencoder"), sets, warmup=5, stop=25)
    steps = max(1, min(int(_preset("autoencoder")["trainer"]["max_steps"]), int(0.9 * minutes * 60.0 / rate)))
    print(f"autoencoder: {rate:.2f} s/step here: {steps} steps fit {minutes:.1f} min", flush=True)
    return steps


def reuse_autoencoder(run: Path) -> harness.Trained:
    """An existing autoencoder run as the benchmark's first stage: its steps from ``latest.pt``,
    its minutes from the first and last records of its ``metrics.jsonl`` (CPU minutes unknown)."""
    import torch

    step = int(torch.load(run / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")["step"])
    log = run / "metrics.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    times = [json.loads(line)["time"] for line in lines if '"time"' in line]
    minutes = (times[-1] - times[0]) / 60.0 if len(times) > 1 else float("nan")
    return harness.Trained(run, step, minutes, float("nan"), times[0] if times else float("nan"))


def train_diffusion(args: argparse.Namespace, data: Path, minutes: float) -> dict[str, Any]:
    """Latent diffusion in one budget: the autoencoder CPU preset for ``--ae-fraction`` of it (its
    cosine schedule sized to ``--ae-steps``: by default what fits that time here), then the
    diffusion CPU preset on that run for the rest. ``--set`` goes to the diffusion stage,
    ``--ae-set`` to the autoencoder (after :data:`LATENT_AE_SETS`). With ``--ae-run`` the
    autoencoder stage is that run (its minutes come from its own record), so diffusion recipes
    compare on one autoencoder."""
    s = args.size
    if args.ae_run is not None:
        ae = reuse_autoencoder(args.ae_run)
    else:
        model_sets = [f"data.size=[{s},{s},{s}]", *LATENT_AE_SETS, *args.ae_set]
        args.ae_steps = fit_ae_steps(args, [f"data.root={data.resolve()}", *model_sets], minutes * args.ae_fraction)
        ae_sets = [*_common(args, data, "bench-ae", args.ae_steps), *model_sets]
        ae = harness.train(harness.build("autoencoder", harness.cpu_preset("autoencoder"), ae_sets),
                           minutes * args.ae_fraction)
    print(f"autoencoder: {ae.steps} steps in {ae.minutes:.1f} min", flush=True)
    sets = [*_common(args, data, "bench", args.steps), f"autoencoder_run={ae.run}", *args.set]
    if args.conditional:
        sets.append("conditioning.enabled=true")
    dm = harness.train(harness.build("diffusion", harness.cpu_preset("diffusion"), sets),
                       max(minutes - ae.minutes, 0.5))
    return {"run": dm.run, "ae_run": ae.run, "steps": dm.steps, "ae_steps": ae.steps,
            "minutes": ae.minutes + dm.minutes, "ae_minutes": ae.minutes, "diffusion_minutes": dm.minutes,
            "cpu_minutes": ae.cpu_minutes + dm.cpu_minutes}


#: Per family: how it trains in one budget, its default minutes, and the convert-h5 method its
#: data is made with (the points rule is the same for all: voxels above --threshold).
FAMILIES: dict[str, dict[str, Any]] = {
    "sparse-gan": {"train": train_sparse_gan, "minutes": 30.0, "method": "occupancy"},
    "diffusion": {"train": train_diffusion, "minutes": 60.0, "method": "gaussian"},
}


SHAPE_KEYS = ("1nna_cd", "cov_cd", "mmd_cd")


def train(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    shutil.rmtree(args.work / "runs", ignore_errors=True)  # this benchmark's own runs from a previous call
    spec = FAMILIES[args.family]
    return spec["train"](args, data, args.minutes or spec["minutes"])


def volume_points(volumes: list, threshold: float, points: int) -> list:
    """The rule of ``medgen eval shapes`` (voxels above ``threshold`` → points through an affine,
    subsampled with a fixed seed) in the grid's frame (voxel index / grid size): convert-h5's
    default ``--normalize sample`` fits each cloud into the grid with its own affine, so world
    frames differ between volumes while the grid frame is what the generator learns.
    ``volumes``: NIfTI files or arrays."""
    import numpy as np

    from medgen_cli.data.points import volume_to_points
    from medgen_cli.metrics.shapes import subsample

    out = []
    for vol in volumes:
        vol = load_volumes([vol])[0] if isinstance(vol, (str, Path)) else np.asarray(vol, dtype=np.float32)
        grid = np.diag([1.0 / s for s in vol.shape[:3]] + [1.0])
        pts = volume_to_points(vol, grid, threshold)
        out.append(subsample(np.asarray(pts, dtype=np.float64), points) if len(pts) else np.zeros((1, 3)))
    return out


def load_volumes(files: list[Path]) -> list:
    import numpy as np

    from medgen_cli.io import load_nifti

    return [np.asarray(load_nifti(f)[0], dtype=np.float32) for f in files]


def diffusion_extras(args: argparse.Namespace, data: Path, trained: dict[str, Any], real_a: list[Path],
                     real_b: list[Path], fake: list[Path], fake_labels: list[int] | None,
                     against_a: Callable[[list], dict[str, float]]) -> dict[str, Any]:
    """2.5D FID of the samples and its real-vs-real floor, the autoencoder's PSNR/SSIM on the val
    volumes and its ceiling (``against_a``: the shape metrics of point sets against real A), and
    (``--conditional``) the class accuracy of the samples by a classifier trained on the real
    training volumes, beside its accuracy on real A and on the autoencoder's reconstructions of A
    (``ae_accuracy``: what samples decoded by this autoencoder can reach)."""
    import numpy as np

    from medgen_cli.api import load_run
    from medgen_cli.metrics.recon import psnr, ssim
    from medgen_cli.metrics.sample_quality import fid_with_floor, sample_class_accuracy

    va, vb, vf = load_volumes(real_a), load_volumes(real_b), load_volumes(fake)
    out: dict[str, Any] = {}
    if not args.no_fid:
        fid = fid_with_floor(vb, va, vf, center_fraction=0.5)
        out.update({"fid_2_5d": fid["fid"], "fid_2_5d_floor": fid["fid_floor"]})
    ae = load_run(trained["ae_run"], checkpoint="best")

    def reconstruct(files: list[Path]) -> list:
        return [np.asarray(ae.reconstruct(f).arrays)[0, 0] for f in files]

    rec = reconstruct(real_a)
    out["ae_psnr"] = float(np.mean([psnr(r, v) for r, v in zip(rec, va)]))
    out["ae_ssim"] = float(np.mean([ssim(r, v) for r, v in zip(rec, va)]))
    # The autoencoder's ceiling: reconstructions of real B scored against A as if they were samples
    # (a diffusion model that drew the latents of B exactly would score this; the floor is B itself).
    out["ae_ceiling"] = against_a(volume_points(reconstruct(real_b), args.threshold, args.points))
    if fake_labels is not None:
        lab = {Path(e["file"]).name: int(e["label"]) for e in json.loads((data / "manifest.json").read_text())}
        train_files = sorted((data / "train").glob("*.nii*"))
        labels_a = [lab[f.name] for f in real_a]
        out.update(sample_class_accuracy(load_volumes(train_files), [lab[f.name] for f in train_files], vf,
                                         fake_labels, va, labels_a, also={"ae": (rec, labels_a)}))
    return out


def score(args: argparse.Namespace, data: Path, trained: dict[str, Any]) -> dict[str, Any]:
    """Sample ``--checkpoint`` (best.pt), turn real and generated volumes into points, and compare them."""
    from medgen_cli.metrics.shapes import metrics_from_distances, pairwise_cd

    t = time.perf_counter()
    extra = {} if args.guidance_scale is None else {"guidance_scale": args.guidance_scale}
    written, fake_labels = harness.sample(trained["run"], args.num, args.work / "samples", seed=1000,
                                          checkpoint=args.checkpoint, **extra)
    fake_files = [f for f in written if f.name.endswith(".nii.gz")]
    s_per_sample = (time.perf_counter() - t) / args.num
    real_a = sorted((data / "val").glob("*.nii*"))[: args.num]
    real_b = sorted((data / "train").glob("*.nii*"))[: args.num]
    pa, pb, pf = (volume_points(f, args.threshold, args.points) for f in (real_a, real_b, fake_files))
    harness.mip_grid(real_a, fake_files, args.json.with_suffix(".png"))
    d_aa = pairwise_cd(pa, pa)  # real A against itself: the same for every set compared with A

    def against_a(points: list) -> dict[str, float]:
        """``shape_metrics(pa, points)`` (its keys of SHAPE_KEYS), A × A computed once."""
        m = metrics_from_distances(pairwise_cd(pa, points), d_aa, pairwise_cd(points, points))
        return {k: m[k] for k in SHAPE_KEYS}

    out = {"generated": against_a(pf), "real_vs_real": against_a(pb), "s_per_sample": round(s_per_sample, 4)}
    if args.family == "diffusion":
        out.update(diffusion_extras(args, data, trained, real_a, real_b, fake_files, fake_labels, against_a))
    return out


def report(result: dict[str, Any]) -> None:
    gen_m, ref_m = result["generated"], result["real_vs_real"]
    print("| set vs real A | 1-NNA (%) | COV (%) | MMD-CD |")
    print("|---|---|---|---|")
    rows = [("generated", gen_m), ("real B (floor)", ref_m)]
    if "ae_ceiling" in result:
        rows.append(("autoencoder(real B) (ceiling)", result["ae_ceiling"]))
    for name, m in rows:
        print(f"| {name} | {100 * m['1nna_cd']:.1f} | {100 * m['cov_cd']:.1f} | {m['mmd_cd']:.5f} |")
    goal = gen_m["1nna_cd"] <= ref_m["1nna_cd"] + 0.10 and gen_m["cov_cd"] >= 0.8 * ref_m["cov_cd"]
    rule = "1-NNA ≤ floor + 10 points, COV ≥ 0.8× floor"
    if "fid_2_5d" in result:
        print(f"2.5D FID {result['fid_2_5d']:.2f} vs floor {result['fid_2_5d_floor']:.2f} "
              f"({result['fid_2_5d'] / max(result['fid_2_5d_floor'], 1e-9):.2f}×)")
        goal = goal and result["fid_2_5d"] <= 2 * result["fid_2_5d_floor"]
        rule += ", 2.5D FID ≤ 2× floor"
    for key in ("ae_psnr", "ae_ssim", "sample_accuracy", "real_accuracy", "ae_accuracy"):
        if key in result:
            print(f"{key}: {result[key]:.4f}")
    print(f"goal ({rule}): {'met' if goal else 'not met'}")


def _steps_or_auto(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of steps or 'auto', got {text!r}")
    return int(text)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=sorted(FAMILIES), default="sparse-gan")
    ap.add_argument("--data", type=Path, default=None, help="folder with train/ and val/ NIfTI volumes")
    ap.add_argument("--dataset", choices=["synthetic", "anatomy"], default="synthetic",
                    help="the set to make when --data is not given")
    ap.add_argument("--size", type=int, default=32, help="voxels per side")
    ap.add_argument("--minutes", type=float, default=None, help="training budget (default: the family's)")
    ap.add_argument("--steps", type=int, default=None, help="training budget in steps (whichever ends first)")
    ap.add_argument("--num", type=int, default=32, help="shapes per compared set")
    ap.add_argument("--points", type=int, default=512, help="points per shape (Chamfer cost grows with its square)")
    ap.add_argument("--threshold", type=float, default=0.5, help="voxels above it become points")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override (diffusion: of the diffusion stage)")
    ap.add_argument("--method", default=None, help="convert-h5 -m of the made set (default: the family's)")
    ap.add_argument("--ae-set", action="append", default=[], metavar="KEY=VALUE",
                    help="diffusion: override of the autoencoder stage")
    ap.add_argument("--ae-run", type=Path, default=None,
                    help="diffusion: an autoencoder run to use instead of training one (compares diffusion recipes on "
                         "one autoencoder; its own minutes are reported)")
    ap.add_argument("--ae-fraction", type=float, default=0.3, help="diffusion: share of the budget for the autoencoder")
    ap.add_argument("--ae-steps", default="auto", type=_steps_or_auto,
                    help="diffusion: autoencoder steps (sizes its LR schedule; ends the stage when before the time); "
                         "auto: what fits the stage's minutes on this machine, at most the preset's")
    ap.add_argument("--conditional", action="store_true",
                    help="diffusion: class-conditional on the manifest's labels (+ class accuracy of the samples)")
    ap.add_argument("--guidance-scale", type=float, default=None,
                    help="diffusion --conditional: classifier-free guidance of the samples (default: the run's)")
    ap.add_argument("--no-fid", action="store_true", help="diffusion: skip the 2.5D FID")
    ap.add_argument("--checkpoint", choices=["best", "latest"], default="best",
                    help="which checkpoint is sampled (latest: e.g. with --rescore, to see what best.pt's choice bought)")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "quality-shapes")
    ap.add_argument("--rescore", action="store_true",
                    help="score the run already in --work again (other --num/--points) instead of training")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    if args.ae_run is not None and not (args.ae_run / "checkpoints" / "latest.pt").is_file():
        ap.error(f"--ae-run {args.ae_run}: no checkpoints/latest.pt (not a trained autoencoder run)")
    return args


def main() -> None:
    args = parse_args()
    import torch

    from benchmarks.make_shape_data import make_shape_data

    args.work.mkdir(parents=True, exist_ok=True)
    method = args.method or FAMILIES[args.family]["method"]
    suffix = "" if method == "occupancy" else f"-{method}"
    data = args.data or make_shape_data(args.dataset, args.size, args.work / f"{args.dataset}{args.size}{suffix}",
                                        method=method)
    if args.rescore:
        run = args.work / "runs" / args.family / "bench"
        ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")
        trained = {"run": run, "steps": int(ck["step"]), "minutes": float("nan"), "cpu_minutes": float("nan"),
                   "ae_run": args.ae_run or args.work / "runs" / "autoencoder" / "bench-ae"}
    else:
        trained = train(args, data)
        print(f"training: {trained['steps']} steps in {trained['minutes']:.1f} min wall "
              f"({trained['cpu_minutes']:.1f} CPU min)", flush=True)
    budget = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in trained.items()
              if k not in ("run", "ae_run")}
    limits = {"budget_minutes": args.minutes or FAMILIES[args.family]["minutes"], "budget_steps": args.steps}
    if args.family == "diffusion":
        limits.update({"ae_fraction": args.ae_fraction, "ae_steps_budget": args.ae_steps})
    # The overrides the autoencoder stage trained with (none known when --ae-run brought it).
    ae_overrides = args.ae_set if args.family != "diffusion" else (
        None if args.ae_run is not None else [*LATENT_AE_SETS, *args.ae_set])
    result = {"family": args.family, "size": args.size, **limits, **budget, "data": str(data), "method": method,
              "num": args.num, "points": args.points, **score(args, data, trained), "overrides": args.set,
              "ae_overrides": ae_overrides, "ae_run": None if args.ae_run is None else str(args.ae_run),
              "checkpoint": args.checkpoint, "guidance_scale": args.guidance_scale, "cpu": harness.cpu_model(),
              "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    harness.write_json(args.json, result)
    report(result)


if __name__ == "__main__":
    main()
