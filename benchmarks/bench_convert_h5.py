"""Benchmark: ``medgen data convert-h5`` throughput vs a straightforward per-cloud reference loop.

The reference is what a first script does: for each cloud, read it, fit its bounding box into the
grid, set the voxel of each point in a Python loop, and ``nibabel.save`` a ``.nii.gz``. A second
reference replaces the point loop by ``np.histogramdd`` (vectorised per cloud, still one cloud at
a time with nibabel's writer). medgen runs ``run_convert`` with 1 worker and with ``--workers``
(its writer uses ``zlib-ng`` when installed, else the standard library's zlib: the figure depends
on it, and the script prints which one ran).
All write the same occupancy volumes; the script checks that every medgen volume equals the
reference's voxel for voxel, and prints points/s, volumes/s, CPU time per volume (all processes)
and the ratios: wall-clock (what a user waits) and CPU time (insensitive to other load).

    python -m benchmarks.bench_convert_h5                  # 1,000 clouds x 2,048 points at 64^3
    python -m benchmarks.bench_convert_h5 --n 200 --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from medgen_cli.data.convert import ConvertOptions, run_convert
from medgen_cli.data.fastnifti import BACKEND
from medgen_cli.data.synth import write_synth_h5

MARGIN = 0.05


def reference_loop(h5: Path, out: Path, res: int, vectorised: bool) -> dict[int, str]:
    """Per-cloud conversion; returns {index: sha1 of the volume bytes}."""
    out.mkdir(parents=True)
    digests = {}
    with h5py.File(h5, "r") as f:
        data = f["data"]
        for i in range(data.shape[0]):
            pts = np.asarray(data[i], dtype=np.float64)[:, :3]
            lo, hi = pts.min(0), pts.max(0)
            size = float(np.max((hi - lo) / (res * (1 - 2 * MARGIN))))
            origin = (lo + hi) / 2 - res * size / 2
            if vectorised:
                h, _ = np.histogramdd((pts - origin) / size, bins=res, range=[(0, res)] * 3)
                vol = (h > 0).astype(np.float32)
            else:
                vol = np.zeros((res, res, res), np.float32)
                for x, y, z in pts:
                    vol[min(math.floor((x - origin[0]) / size), res - 1),
                        min(math.floor((y - origin[1]) / size), res - 1),
                        min(math.floor((z - origin[2]) / size), res - 1)] = 1.0
            affine = np.diag([size, size, size, 1.0])
            affine[:3, 3] = origin + size / 2
            nib.save(nib.Nifti1Image(vol, affine), str(out / f"cloud_{i:05d}.nii.gz"))
            digests[i] = hashlib.sha1(vol.tobytes()).hexdigest()
    return digests


def medgen_digests(out: Path) -> dict[int, str]:
    records = json.loads((out / "manifest.json").read_text())
    return {r["index"]: hashlib.sha1(np.asarray(nib.load(str(out / r["file"])).dataobj, dtype=np.float32).tobytes()).hexdigest()
            for r in records}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="clouds")
    ap.add_argument("--points", type=int, default=2048, help="points per cloud")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-histogramdd", action="store_true", help="skip the second (vectorised) reference")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        h5 = write_synth_h5(tmp / "clouds.h5", args.n, args.points, seed=0)
        total_pts = args.n * args.points
        rows = []

        def cpu_seconds() -> float:
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, once joined
            return time.process_time() + kids.ru_utime + kids.ru_stime

        def timed(name: str, fn) -> float:
            t, c = time.perf_counter(), cpu_seconds()
            fn()
            dt, cpu = time.perf_counter() - t, cpu_seconds() - c
            rows.append((name, dt, cpu))
            print(f"{name:<34} {dt:8.2f} s  {total_pts / dt:>12,.0f} points/s  {args.n / dt:8.1f} volumes/s  "
                  f"CPU {1000 * cpu / args.n:6.2f} ms/volume", flush=True)
            return dt

        ref = {}
        t_ref = timed("reference: per-point loop", lambda: ref.update(reference_loop(h5, tmp / "ref", args.resolution, False)))
        if not args.skip_histogramdd:
            timed("reference: histogramdd per cloud", lambda: reference_loop(h5, tmp / "hist", args.resolution, True))
        for workers in sorted({1, args.workers}):
            out = tmp / f"medgen_{workers}"
            opts = ConvertOptions(inputs=[str(h5)], out=str(out), resolution=(args.resolution,) * 3, margin=MARGIN,
                                  val_fraction=0.0, workers=workers)
            dt = timed(f"medgen convert-h5 --workers {workers}", lambda: run_convert(opts))
            got = medgen_digests(out)
            same = sum(got.get(i) == d for i, d in ref.items())
            print(f"  voxels identical to the reference: {same}/{len(ref)}; "
                  f"speed-up vs per-point loop: {t_ref / dt:.1f}x", flush=True)
            if same != len(ref):
                raise SystemExit("medgen volumes differ from the reference")
        print(f"\n{args.n} clouds x {args.points} points at {args.resolution}^3 on {os.cpu_count()} CPU(s); "
              f"medgen's deflate backend: {BACKEND}")
        print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
              "(wall-clock ratios shrink when other processes share the CPUs; CPU-time ratios do not)")
        base, base_cpu = rows[0][1], rows[0][2]
        for name, dt, cpu in rows:
            print(f"  {name:<34} ratio vs per-point loop: wall {base / dt:5.1f}x   CPU time {base_cpu / cpu:5.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
