"""Sparse 3D GAN quality: 1-NNA / COV / MMD (Chamfer) of samples vs held-out shapes, and the
same numbers for a second real subset (the real-vs-real reference).

Run by hand::

    python benchmarks/quality_sparse_gan.py --minutes 20 --json quality_sparse_gan.json
    python benchmarks/quality_sparse_gan.py --data DIR --minutes 20 --json OUT   # DIR/train, DIR/val NIfTIs

Without ``--data`` it makes the synthetic shape classes (``medgen data synth-h5``: organs, shells,
pairs) and converts them with ``medgen data convert-h5`` (occupancy, ``--size``³, a third to val).
One sparse-gan is trained for the wall-clock budget (it stops like Ctrl-C; ``best.pt`` is the
validation step whose 1-NNA was closest to 50%). Then ``--num`` samples of fixed seeds from
``best.pt`` (EMA weights) are compared with the first ``--num`` val shapes (set A); a second real
set B (the first ``--num`` training shapes) against A gives the floor a perfect generator would
reach with this many shapes. Shapes go through the training pipeline (resize, threshold) and are
voxel coordinates / size, ``--points`` points each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]


def make_synthetic(work: Path, size: int, n: int) -> Path:
    data = work / "shapes"
    if (data / "val").is_dir():
        return data
    medgen = [sys.executable, "-m", "medgen_cli"]
    subprocess.run([*medgen, "data", "synth-h5", "--out", str(work / "shapes.h5"), "--n", str(n), "--overwrite"],
                   check=True)
    subprocess.run([*medgen, "data", "convert-h5", str(work / "shapes.h5"), "--out", str(data), "-r", str(size),
                    "--val-fraction", "0.34", "--workers", "1"], check=True)
    return data


def overrides(args: argparse.Namespace, data: Path) -> list[str]:
    s = args.size
    levels = s.bit_length() - 3            # init 4³ → size³
    ch = [min(16 * 2 ** (levels - i), 128) for i in range(levels + 1)]
    return [
        f"data.root={data}", f"data.voxel_size={s}", f"output_dir={args.work / 'runs'}", "name=gan",
        "trainer.device=cpu", f"trainer.batch_size={args.batch}", "trainer.max_steps=1000000",
        f"trainer.val_every={args.val_every}", f"trainer.ckpt_every={args.val_every}", "trainer.log_every=10",
        "trainer.image_every=1000000", "trainer.ema.enabled=true", "trainer.ema.decay=0.999",
        "generator.latent_dim=64", "generator.init_size=4", f"generator.channels={json.dumps(ch)}",
        f"generator.max_voxels={args.max_voxels}", f"discriminator.channels={json.dumps(ch[::-1][: levels + 1])}",
        "loss.n_critic=2", "sparse.backend=torch", "data.min_voxels=8", f"generator.output={args.output}",
        f"validation.num_samples={args.val_samples}", f"validation.num_points={args.points}",
    ]


def shapes_of(family: object, files: list[Path], num: int, points: int) -> list:
    """Real shapes through the family's own loader and collate (same frame as the samples)."""
    from medgen_cli.families.sparse_gan.family import collate_sparse
    from medgen_cli.families.sparse_gan.validation import sparse_to_points
    from medgen_cli.sparse.tensor import SparseTensor

    cfg = family.cfg  # type: ignore[attr-defined]
    ds = family._dataset(files[:num], train=False)  # type: ignore[attr-defined]
    out = []
    for i in range(len(ds)):
        b = collate_sparse([ds[i]], cfg.data.threshold, cfg.data.min_voxels)
        out.extend(sparse_to_points(SparseTensor(b["coords"], b["feats"], 1, 1), cfg.data.voxel_size, points, seed=i))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="folder with train/ and val/ NIfTI volumes")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=32, help="voxels per side (a power of two ≥ 16)")
    ap.add_argument("--synthetic", type=int, default=192, help="synthetic clouds when --data is not given")
    ap.add_argument("--num", type=int, default=32, help="shapes per compared set")
    ap.add_argument("--points", type=int, default=512, help="points per shape")
    ap.add_argument("--val-samples", type=int, default=16, help="shapes per set at each validation")
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-voxels", type=int, default=2048)
    ap.add_argument("--output", choices=["occupancy", "value"], default="occupancy",
                    help="generator.output: occupancy for binary shapes (the synthetic set), value for densities")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "quality-sparse-gan")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    import torch

    from _budget import nifti_files, train_for_minutes
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.run_loading import load_run
    from medgen_cli.families.sparse_gan import sampling
    from medgen_cli.families.sparse_gan.validation import sparse_to_points
    from medgen_cli.metrics.shapes import shape_metrics

    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.data or make_synthetic(args.work, args.size, args.synthetic)
    train_files, val_files = nifti_files(data / "train"), nifti_files(data / "val")
    shutil.rmtree(args.work / "runs", ignore_errors=True)  # this benchmark's own run from a previous call
    run, steps, wall, cpu = train_for_minutes(build_config("sparse-gan", overrides=overrides(args, data)), args.minutes)
    print(f"training: {steps} steps in {wall:.1f} min wall ({cpu:.1f} CPU min)", flush=True)
    ckpt = "best" if (run / "checkpoints" / "best.pt").is_file() else "latest"
    loaded = load_run(run, checkpoint=ckpt, device="cpu")
    fam, gen = loaded.family, loaded.ctx.eval_module("generator")
    t = time.perf_counter()
    fake = []
    with torch.no_grad():
        z = sampling.latents(1000, args.num, fam.cfg.generator.latent_dim)  # seeds unseen by validation
        for s in range(0, args.num, 8):
            fake.extend(sparse_to_points(gen(z[s:s + 8]), fam.cfg.data.voxel_size, args.points, seed=s))
    real_a = shapes_of(fam, val_files, args.num, args.points)
    real_b = shapes_of(fam, train_files, args.num, args.points)
    gen_m = shape_metrics(real_a, fake)
    ref_m = shape_metrics(real_a, real_b)
    print(f"metrics in {time.perf_counter() - t:.0f}s", flush=True)
    result = {"steps": steps, "minutes": wall, "cpu_minutes": cpu, "checkpoint": ckpt, "num": args.num,
              "size": args.size, "points": args.points, "generated": gen_m, "real_vs_real": ref_m}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print("| set vs real A | 1-NNA (%) | COV (%) | MMD-CD |")
    print("|---|---|---|---|")
    for name, m in (("generated", gen_m), ("real B (reference)", ref_m)):
        print(f"| {name} | {100 * m['1nna_cd']:.1f} | {100 * m['cov_cd']:.1f} | {m['mmd_cd']:.5f} |")


if __name__ == "__main__":
    main()
