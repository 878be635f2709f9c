"""Peak memory and time of ``medgen sample AE_RUN --input VOL --no-resize`` at 32³, 64³ and 128³,
and the seam error of tiled reconstruction (issue 28 item 3).

An autoencoder run of the CPU preset's network (``configs/cpu/autoencoder.yaml``) at
``data.size`` = ``--train-size`` (default 64³, random 16³ patches) is trained for ``--steps`` on
64³ crops of nilearn's MNI152 T1 template (package data, no download), or ``--run`` names an
existing autoencoder run. The inputs are crops of the same template centred on the brain.
Each reconstruction is the CLI command itself, run in its own subprocess; its peak resident
size is ``VmHWM`` of /proc/self/status at the end, "over imports" the same minus the resident
size after importing torch, MONAI's networks and medgen's autoencoder family (what loading the
run, reading the volume, reconstructing and writing added). The default tile is
the run's data.size, so 32³ and 64³ run whole and 128³ in tiles. Two more commands give the
seam error: 128³ whole (``--tile 128``) against 128³ tiled, and 64³ with ``--tile 32`` against
64³ whole, as PSNR (data range 1) of tiled vs whole, next to each one's PSNR against its input.
Goal: peak(128³) ≤ 2 × peak(64³).

    OMP_NUM_THREADS=1 python -m benchmarks.bench_ae_tiles [--steps 300] [--run RUN] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZES = (32, 64, 128)


def _status_mb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(run: str, volume: str, out: str, tile: str | None) -> dict:
    """``medgen sample RUN --input VOLUME --no-resize [--tile T]`` in this process."""
    import monai.inferers  # noqa: F401  (imported before the baseline: every size pays for them)
    import monai.networks.nets  # noqa: F401
    import torch

    import medgen_cli.families.autoencoder.family  # noqa: F401
    from medgen_cli.cli.app import main

    base = _status_mb("VmRSS")
    argv = ["sample", run, "--input", volume, "--no-resize", "--out", out, "--device", "cpu"]
    t0 = time.perf_counter()
    try:
        main(argv + (["--tile", tile] if tile else []))
    except SystemExit as exc:
        if exc.code:
            raise
    return {"sec": time.perf_counter() - t0, "peak_mb": _status_mb("VmHWM"), "imports_mb": base,
            "threads": torch.get_num_threads()}


def _template() -> tuple[np.ndarray, np.ndarray]:
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    return np.clip(np.asarray(img.get_fdata(), dtype=np.float32), 0.0, 1.0), img.affine


def _crop(vol: np.ndarray, affine: np.ndarray, corner: tuple[int, ...], size: int, path: Path) -> Path:
    import nibabel as nib

    from medgen_cli.io import save_nifti

    x, y, z = corner
    aff = affine.copy()
    aff[:3, 3] = nib.affines.apply_affine(affine, corner)
    save_nifti(vol[x:x + size, y:y + size, z:z + size], path, affine=aff, overwrite=True)
    return path


def make_data(root: Path, train_size: int) -> dict[int, Path]:
    """Training crops (``root/data/{train,val}``) and one brain-centred input per size."""
    vol, affine = _template()
    brain = vol > 0.05
    centre = np.round(np.argwhere(brain).mean(0)).astype(int)
    s = train_size
    starts = [range(0, n - s + 1, s // 2) for n in vol.shape]
    corners = [(x, y, z) for x in starts[0] for y in starts[1] for z in starts[2]
               if brain[x:x + s, y:y + s, z:z + s].mean() > 0.4]
    for i, c in enumerate(corners):
        _crop(vol, affine, c, s, root / "data" / ("val" if i % 8 == 7 else "train") / f"crop_{i:03d}.nii.gz")
    inputs = {}
    for size in SIZES:
        corner = tuple(int(np.clip(m - size // 2, 0, n - size)) for m, n in zip(centre, vol.shape))
        inputs[size] = _crop(vol, affine, corner, size, root / "inputs" / f"mni_{size}.nii.gz")
    return inputs


def train_run(root: Path, steps: int, train_size: int) -> Path:
    s = train_size
    cmd = [sys.executable, "-m", "medgen_cli", "train", "autoencoder", "--config", str(REPO / "configs/cpu/autoencoder.yaml"),
           "--set", f"data.root={root / 'data'}", "--set", f"data.size=[{s},{s},{s}]", "--set", f"output_dir={root / 'runs'}",
           "--set", "name=ae", "--set", f"trainer.max_steps={steps}", "--set", f"trainer.val_every={steps}",
           "--set", f"trainer.ckpt_every={steps}", "--set", f"trainer.image_every={10 * steps}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return root / "runs" / "autoencoder" / "ae"


def run_worker(run: Path, volume: Path, out: Path, tile: str | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(volume), "--run", str(run), "--out", str(out)] + (["--tile", tile] if tile else [])
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _read(folder: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(str(next(folder.rglob("recon_*.nii.gz")))).dataobj, dtype=np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def seam(root: Path, volume: Path, tiled: str, whole: str) -> dict:
    """PSNR of the tiled reconstruction vs the whole one, and of each vs the (min-max) input."""
    import nibabel as nib

    x = np.asarray(nib.load(str(volume)).dataobj, dtype=np.float32)
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-8)
    t, w = _read(root / tiled), _read(root / whole)
    return {"tiled_vs_whole": _psnr(t, w), "whole_vs_input": _psnr(w, x), "tiled_vs_input": _psnr(t, x)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="an existing autoencoder run (default: train one)")
    ap.add_argument("--steps", type=int, default=300, help="training steps of the run made here")
    ap.add_argument("--train-size", type=int, default=64, help="data.size of the run made here (the default tile)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--tile", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(str(args.run), args.worker, args.out, args.tile)))
        return
    root = Path(tempfile.mkdtemp(prefix="bench_ae_tiles_"))
    inputs = make_data(root, args.train_size)
    t0 = time.perf_counter()
    run = args.run or train_run(root, args.steps, args.train_size)
    print(f"run: {run} ({'given' if args.run else f'trained {args.steps} steps in {time.perf_counter() - t0:.0f} s'})")
    res: dict = {"run": str(run), "cpu": _cpu_model(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    jobs = [(f"{s}", inputs[s], None) for s in SIZES] + [("128-whole", inputs[128], "128"), ("64-tile32", inputs[64], "32")]
    for name, volume, tile in jobs:
        r = res[name] = run_worker(run, volume, root / f"out-{name}", tile)
        print(f"{name:>10}: peak RSS {r['peak_mb']:6.0f} MB (over imports +{r['peak_mb'] - r['imports_mb']:5.0f} MB), "
              f"{r['sec']:6.2f} s/volume, {r['threads']} thread(s)")
    res["seam_128_tile_default"] = seam(root, inputs[128], "out-128", "out-128-whole")
    res["seam_64_tile32"] = seam(root, inputs[64], "out-64-tile32", "out-64")
    for key in ("seam_128_tile_default", "seam_64_tile32"):
        s = res[key]
        print(f"{key}: tiled vs whole {s['tiled_vs_whole']:.1f} dB; vs input: whole {s['whole_vs_input']:.2f} dB, "
              f"tiled {s['tiled_vs_input']:.2f} dB")
    ratio = res["128"]["peak_mb"] / res["64"]["peak_mb"]
    extra = (res["128"]["peak_mb"] - res["128"]["imports_mb"]) / (res["64"]["peak_mb"] - res["64"]["imports_mb"])
    res["peak_ratio_128_64"], res["peak_over_imports_ratio_128_64"] = ratio, extra
    print(f"peak 128³ / 64³: {ratio:.2f} (over imports {extra:.2f}); goal ≤ 2.  CPU: {res['cpu']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


def _cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
