"""Wall time of ``medgen eval fid`` vs ``python -m pytorch_fid`` on the same folders.

Three runs on the same REAL/FAKE folders of random 32x32 PNGs:

* ``python -m pytorch_fid REAL FAKE`` (the reference),
* ``medgen eval fid REAL FAKE`` with an empty statistics cache (cold),
* the same again, REAL's statistics now cached (warm),
* warm with ``--sqrtm eigh`` (faster matrix square root, values ~1e-7 relative from pytorch-fid).

At 2048-d, scipy's ``sqrtm`` of the 2048x2048 product takes a large, fixed share of the time
on CPU (pytorch-fid pays it too), which bounds what the cache can save for small sets.

Prints the times, the ratios to pytorch-fid (goals: cold <= 1.0x, warm <= 0.5x) and checks that the
three FID values are equal. Uses the real FID weights when the torch hub cache has them; otherwise
(``--random-weights``, or offline) a randomly initialised FID-Inception state dict in a temporary
TORCH_HOME, which times the same network. Run by hand:

    python benchmarks/bench_fid.py --n 50 --device cpu
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

import numpy as np

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"


def write_images(folder: Path, n: int, seed: int, size: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")


def random_weights(path: Path) -> None:
    """pytorch-fid's FID-Inception architecture with random (He) weights, saved as a state dict."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.fid_weights import random_fid_inception_state

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_fid_inception_state(0), path)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child, stdout); CPU time is steadier on a shared machine."""
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
    ap.add_argument("--n", type=int, default=50, help="images per folder")
    ap.add_argument("--size", type=int, default=32, help="image side")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dims", type=int, default=2048)
    ap.add_argument("--random-weights", action="store_true", help="time with random FID-Inception weights")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = dict(os.environ, MEDGEN_CACHE_DIR=str(tmp / "cache"), MEDGEN_OFFLINE="1")
        import torch.hub

        if args.random_weights or not (Path(torch.hub.get_dir()) / "checkpoints" / FID_FILE).is_file():
            env["TORCH_HOME"] = str(tmp / "torch_home")
            random_weights(tmp / "torch_home" / "hub" / "checkpoints" / FID_FILE)
            print("weights: random FID-Inception (timing only)")
        real, fake = tmp / "real", tmp / "fake"
        write_images(real, args.n, 0, args.size)
        write_images(fake, args.n, 1, args.size)
        common = [str(real), str(fake), "--device", args.device, "--dims", str(args.dims)]

        t_ref, c_ref, out = timed([sys.executable, "-m", "pytorch_fid", *common], env)
        fid_ref = float(re.search(r"FID:\s*([-\d.eE+]+)", out).group(1))
        medgen = [sys.executable, "-m", "medgen_cli", "eval", "fid", *common, "--json"]
        t_cold, c_cold, out_cold = timed(medgen, env)
        t_warm, c_warm, out_warm = timed(medgen, env)
        t_eigh, c_eigh, out_eigh = timed(medgen + ["--sqrtm", "eigh"], env)
        eigh = json.loads(out_eigh)
        cold, warm = json.loads(out_cold), json.loads(out_warm)
        assert warm["real"]["source"] == "cache", "the warm run did not use the cache"

    print(f"{args.n} + {args.n} images of {args.size}x{args.size}, dims {args.dims}, device {args.device}")
    print(f"{'':12s} {'wall s':>8s} {'CPU s':>8s} {'wall ratio':>10s} {'CPU ratio':>10s}  FID")
    print(f"{'pytorch-fid':12s} {t_ref:8.2f} {c_ref:8.2f} {'':>10s} {'':>10s}  {fid_ref!r}")
    print(f"{'medgen cold':12s} {t_cold:8.2f} {c_cold:8.2f} {t_cold / t_ref:9.2f}x {c_cold / c_ref:9.2f}x  "
          f"{cold['fid']!r}  (goal <= 1.0x)")
    print(f"{'medgen warm':12s} {t_warm:8.2f} {c_warm:8.2f} {t_warm / t_ref:9.2f}x {c_warm / c_ref:9.2f}x  "
          f"{warm['fid']!r}  (goal <= 0.5x)")
    print(f"{'warm, eigh':12s} {t_eigh:8.2f} {c_eigh:8.2f} {t_eigh / t_ref:9.2f}x {c_eigh / c_ref:9.2f}x  "
          f"{eigh['fid']!r}  (--sqrtm eigh, rel. diff {abs(eigh['fid'] - fid_ref) / abs(fid_ref):.1e})")
    equal = np.isclose(cold["fid"], fid_ref, rtol=1e-9, atol=0) and cold["fid"] == warm["fid"]
    print(f"values equal: {bool(equal)}")
    if not equal:
        sys.exit(1)


if __name__ == "__main__":
    main()
