"""One shape benchmark for every family that generates 3D shapes: 1-NNA / COV / MMD (Chamfer) of
samples against held-out shapes, beside the same numbers for a second real subset.

Run by hand::

    python benchmarks/quality_shapes.py --family sparse-gan --size 32 --json out.json
    python benchmarks/quality_shapes.py --family sparse-gan --dataset anatomy --size 32 --json out.json
    python benchmarks/quality_shapes.py --family sparse-gan --data DIR --minutes 30 --json out.json

``DIR`` holds ``train/`` and ``val/`` NIfTI volumes as ``medgen data convert-h5`` writes them;
without ``--data`` the set is made by ``make_shape_data.py`` (``--dataset synthetic``: the phantom
classes; ``anatomy``: posed MNI152 surfaces). The family's CPU preset (``configs/cpu/<family>.yaml``)
trains for ``--minutes`` (default 30 for sparse-gan) or ``--steps``, whichever ends first (the
budget ends like a Ctrl-C: ``latest.pt`` is written and the run is an ordinary medgen run).
``--num`` samples of seeds 1000… come from ``best.pt`` through medgen's own sampling (the files
``medgen sample`` writes), and every volume — real or generated — becomes points by the rule of
``medgen eval shapes`` (voxels above ``--threshold``, ``--points`` per shape), in the grid's frame. Generated shapes are compared with the first ``--num`` val shapes (A); the first ``--num``
training shapes (B) against A give the floor a perfect generator reaches with this many shapes.
Writes the JSON and ``<json>.png``: real shapes (left) and generated ones (right) as MIPs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]

def sparse_gan_overrides(cfg: dict[str, Any], size: int) -> list[str]:
    """Grid size: the preset's channel lists stay, the generator's first grid scales with the size."""
    ups = len(cfg["generator"]["channels"]) - 1
    if size % 2**ups or size // 2**ups < 1:
        raise SystemExit(f"--size {size} is not a multiple of 2^{ups} (the preset's upsamplings)")
    return [f"data.voxel_size={size}", f"generator.init_size={size // 2**ups}"]


#: Per family: its CPU preset, default minutes, and the overrides that set the grid size on the
#: preset (a family added here — e.g. diffusion with its autoencoder stage — supplies these three).
FAMILIES: dict[str, dict[str, Any]] = {
    "sparse-gan": {"preset": REPO / "configs" / "cpu" / "sparse_gan.yaml", "minutes": 30.0,
                   "size_overrides": sparse_gan_overrides},
}


def train(args: argparse.Namespace, data: Path) -> tuple[Path, int, float, float]:
    import yaml

    from _budget import train_for_minutes
    from medgen_cli.config.build import build_config

    spec = FAMILIES[args.family]
    preset = yaml.safe_load(Path(spec["preset"]).read_text())
    sets = [f"data.root={data.resolve()}", f"output_dir={args.work / 'runs'}", "name=bench", "trainer.device=cpu",
            f"trainer.max_steps={args.steps or 10**7}", *spec["size_overrides"](preset, args.size), *args.set]
    cfg = build_config(args.family, config_file=spec["preset"], overrides=sets)
    shutil.rmtree(args.work / "runs", ignore_errors=True)  # this benchmark's own run from a previous call
    return train_for_minutes(cfg, args.minutes or spec["minutes"])


def volume_points(files: list[Path], threshold: float, points: int) -> list:
    """The rule of ``medgen eval shapes`` (voxels above ``threshold`` → points through an affine,
    subsampled with a fixed seed) in the grid's frame (voxel index / grid size): convert-h5's
    default ``--normalize sample`` fits each cloud into the grid with its own affine, so world
    frames differ between volumes while the grid frame is what the generator learns."""
    import numpy as np

    from medgen_cli.data.points import volume_to_points
    from medgen_cli.io import load_nifti
    from medgen_cli.metrics.shapes import subsample

    out = []
    for f in files:
        vol, _ = load_nifti(f)
        grid = np.diag([1.0 / s for s in vol.shape[:3]] + [1.0])
        pts = volume_to_points(vol, grid, threshold)
        out.append(subsample(np.asarray(pts, dtype=np.float64), points) if len(pts) else np.zeros((1, 3)))
    return out


def sample_files(run: Path, num: int, out: Path) -> list[Path]:
    from medgen_cli.api import load_run

    loaded = load_run(run, checkpoint="best")
    shutil.rmtree(out, ignore_errors=True)
    samples = loaded.sample(num, seed=1000)
    loaded.write(samples, out)
    return sorted(out.rglob("*.nii.gz"))


def mip_grid(real: list[Path], fake: list[Path], path: Path, rows: int = 8) -> None:
    """Rows of shapes: real (left) and generated (right), each as its three MIPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medgen_cli.io import load_nifti

    rows = min(rows, len(real), len(fake))
    fig, axes = plt.subplots(rows, 7, figsize=(10.5, 1.5 * rows), gridspec_kw={"width_ratios": [1, 1, 1, 0.15, 1, 1, 1]})
    for r in range(rows):
        for side, files, c0 in (("real", real, 0), ("generated", fake, 4)):
            vol, _ = load_nifti(files[r])
            for a in range(3):
                ax = axes[r, c0 + a]
                ax.imshow(vol.max(axis=a).T, cmap="gray", origin="lower", vmin=0, vmax=max(float(vol.max()), 1e-6))
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{side} MIP {'xyz'[a]}", fontsize=8)
        axes[r, 3].axis("off")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s), for the report."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def score(args: argparse.Namespace, data: Path, run: Path) -> dict[str, Any]:
    """Sample ``best.pt``, turn real and generated volumes into points, and compare them."""
    from medgen_cli.metrics.shapes import shape_metrics

    t = time.perf_counter()
    fake_files = sample_files(run, args.num, args.work / "samples")
    s_per_sample = (time.perf_counter() - t) / args.num
    real_a = sorted((data / "val").glob("*.nii*"))[: args.num]
    real_b = sorted((data / "train").glob("*.nii*"))[: args.num]
    pa, pb, pf = (volume_points(f, args.threshold, args.points) for f in (real_a, real_b, fake_files))
    keys = ("1nna_cd", "cov_cd", "mmd_cd")
    mip_grid(real_a, fake_files, args.json.with_suffix(".png"))
    return {"generated": {k: v for k, v in shape_metrics(pa, pf).items() if k in keys},
            "real_vs_real": {k: v for k, v in shape_metrics(pa, pb).items() if k in keys},
            "s_per_sample": round(s_per_sample, 4)}


def report(result: dict[str, Any]) -> None:
    gen_m, ref_m = result["generated"], result["real_vs_real"]
    print("| set vs real A | 1-NNA (%) | COV (%) | MMD-CD |")
    print("|---|---|---|---|")
    for name, m in (("generated", gen_m), ("real B (floor)", ref_m)):
        print(f"| {name} | {100 * m['1nna_cd']:.1f} | {100 * m['cov_cd']:.1f} | {m['mmd_cd']:.5f} |")
    goal = gen_m["1nna_cd"] <= ref_m["1nna_cd"] + 0.10 and gen_m["cov_cd"] >= 0.8 * ref_m["cov_cd"]
    print(f"goal (1-NNA ≤ floor + 10 points, COV ≥ 0.8× floor): {'met' if goal else 'not met'}")


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
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "quality-shapes")
    ap.add_argument("--rescore", action="store_true",
                    help="score the run already in --work again (other --num/--points) instead of training")
    ap.add_argument("--json", type=Path, required=True)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    from make_shape_data import make_shape_data

    args.work.mkdir(parents=True, exist_ok=True)
    data = args.data or make_shape_data(args.dataset, args.size, args.work / f"{args.dataset}{args.size}")
    if args.rescore:
        run = args.work / "runs" / args.family / "bench"
        ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")
        steps, wall, cpu = int(ck["step"]), float("nan"), float("nan")
    else:
        run, steps, wall, cpu = train(args, data)
        print(f"training: {steps} steps in {wall:.1f} min wall ({cpu:.1f} CPU min)", flush=True)
    result = {"family": args.family, "size": args.size, "steps": steps, "minutes": round(wall, 2),
              "cpu_minutes": round(cpu, 2), "data": str(data), "num": args.num, "points": args.points,
              **score(args, data, run), "overrides": args.set, "cpu": cpu_model(),
              "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    report(result)


if __name__ == "__main__":
    main()
