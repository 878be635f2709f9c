"""Diffusion step time with and without the latent cache (``data.latent_cache_gb``), same run.

Without the cache every step encodes its batch with the frozen autoencoder; with it, each distinct
volume (each flip its own) is encoded once. Both runs train the diffusion CPU preset on the
autoencoder run ``--ae-run`` (its data unless ``--data``) and are timed from step ``--warmup`` to
``--steps`` (``harness.calibrate``: median wall s/step between training records). The cache fills
as volumes are met: with ``data.flip=false`` (``--no-flip``) after one epoch, with flips (8
variants per volume) gradually — set ``--warmup`` past the point you want to time.

    python -m benchmarks.bench_latent_cache --ae-run runs/autoencoder/run-001 --no-flip --warmup 40 --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import harness


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ae-run", type=Path, required=True, help="a trained autoencoder run")
    ap.add_argument("--data", type=Path, default=None, help="data folder (default: the autoencoder run's)")
    ap.add_argument("--warmup", type=int, default=40, help="steps left out of the timing")
    ap.add_argument("--steps", type=int, default=100, help="last step timed")
    ap.add_argument("--no-flip", action="store_true", help="data.flip=false: the cache is full after one epoch")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra diffusion override")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    import torch

    base = [f"autoencoder_run={a.ae_run.resolve()}", "trainer.device=cpu", *a.set]
    if a.data is not None:
        base.append(f"data.root={a.data.resolve()}")
    if a.no_flip:
        base.append("data.flip=false")
    result: dict = {"cpu": harness.cpu_model(), "threads": torch.get_num_threads(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "warmup": a.warmup, "steps": a.steps,
                    "flip": not a.no_flip}
    for name, gb in (("encode_every_step", 0), ("latent_cache", 1)):
        rate = harness.calibrate("diffusion", harness.cpu_preset("diffusion"), [*base, f"data.latent_cache_gb={gb}"],
                                 a.warmup, a.steps)
        result[name] = round(rate, 4)
        print(f"{name}: {rate:.3f} s/step", flush=True)
    result["speedup"] = round(result["encode_every_step"] / result["latent_cache"], 3)
    print(f"latent cache: {result['speedup']:.2f}× faster per step "
          f"({result['threads']} threads, {result['cpu']})")
    if a.json:
        harness.write_json(a.json, result)


if __name__ == "__main__":
    main()
