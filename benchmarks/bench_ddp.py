"""DDP scaling of one 3D family: 1 -> 2 processes on the CPU (gloo), and 1 -> N GPUs when there are several.

For each process count K the same command a user runs, ``medgen train autoencoder --nproc K``
(the CPU preset at ``--size``³, ``--batch`` volumes per process, ``OMP_NUM_THREADS=1`` per
process), on ``--volumes`` volumes from ``medgen data synth-h5`` + ``convert-h5``, and reports:

* **throughput** — samples/s over all processes (K × batch / median s per step after ``--warmup``);
* **scaling efficiency** — throughput at K / (K × throughput at 1); 1.0 is perfect;
* **data wait** — the mean of the trainer's ``stats/data_wait`` after the warm-up (share of step
  time blocked on the data loader, averaged over ranks);
* **time to first step** — from launching the command to the first step's metrics line (imports,
  config, the data check, process-group setup; no cache is filled before it);
* **peak RSS** — of the largest process and of all of them together (sampled every 0.2 s).

    python -m benchmarks.bench_ddp --json bench_ddp.json                    # 1,000 x 64³, 40 steps
    python -m benchmarks.bench_ddp --volumes 40 --size 32 --steps 10 --json /tmp/smoke.json

The data is made in a temporary folder unless ``--data DIR`` names one (made there when empty,
reused when it already holds ``train/``). Run by hand, not in CI: at 1,000 x 64³ it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import harness

FAMILY = "autoencoder"
NEVER = "1000000000"


def make_data(root: Path, volumes: int, size: int) -> Path:
    """``root`` with train/ and val/ NIfTI volumes (made with medgen's own commands unless present)."""
    if (root / "train").is_dir():
        return root
    with tempfile.TemporaryDirectory(prefix="medgen-bench-ddp-h5-") as tmp:
        h5 = Path(tmp) / "clouds.h5"
        harness.medgen("data", "synth-h5", "--n", str(volumes), "-o", str(h5))
        harness.medgen("data", "convert-h5", str(h5), "-r", str(size), "-m", "gaussian", "--out", str(root),
                       "--overwrite")
    return root


def _children(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class RssPeak(threading.Thread):
    """Samples the resident memory of a process tree until it ends: peak of one process, peak sum."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.one = self.total = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            sizes = [_rss_mb(p) for p in _children(self.pid)]
            # The launcher and torchrun are small; the trainers dominate both numbers.
            self.one = max(self.one, max(sizes, default=0.0))
            self.total = max(self.total, sum(sizes))


def train_once(nproc: int, device: str, data: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One ``medgen train`` with ``nproc`` processes; its measurements."""
    name = f"{device}-{nproc}"
    sets = [f"data.root={data}", f"data.size=[{args.size}, {args.size}, {args.size}]", f"trainer.device={device}",
            f"trainer.max_steps={args.steps}", f"trainer.batch_size={args.batch}", f"trainer.num_workers={args.workers}",
            "trainer.log_every=1", f"trainer.val_every={NEVER}", f"trainer.ckpt_every={NEVER}",
            f"trainer.image_every={NEVER}", "trainer.val_batches=1", *args.overrides]
    if args.size < 16:  # the preset trains on 16³ patches
        sets.append(f"data.patch_size=[{args.size}, {args.size}, {args.size}]")
    cmd = [sys.executable, "-m", "medgen_cli", "train", FAMILY, "-c", str(harness.cpu_preset(FAMILY)),
           "--output-dir", str(out), "--name", name]
    for s in sets:
        cmd += ["--set", s]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    started = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rss = RssPeak(proc.pid)
    rss.start()
    log, _ = proc.communicate()
    rss.done.set()
    rss.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log[-3000:]}")
    run = out / FAMILY / name
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if any(k.startswith("train/") for k in r)]
    per_step = harness.seconds_per_step(run, after=args.warmup)
    waits = [r["stats/data_wait"] for r in train if r["step"] > args.warmup and "stats/data_wait" in r]
    return {
        "processes": nproc, "device": device, "steps": len(train),
        "first_step_s": round(train[0]["time"] - started, 2),
        "s_per_step": per_step,
        "samples_per_s": nproc * args.batch / per_step if per_step else None,
        "data_wait": statistics.mean(waits) if waits else None,
        "data_wait_max": max(waits) if waits else None,
        "peak_rss_mb_process": round(rss.one), "peak_rss_mb_total": round(rss.total),
    }


def scaling(rows: list[dict[str, Any]]) -> None:
    """Adds ``efficiency`` (throughput / (K x the 1-process throughput)) to each row."""
    base = rows[0]["samples_per_s"]
    for r in rows:
        k = r["processes"] / rows[0]["processes"]
        r["efficiency"] = r["samples_per_s"] / (k * base) if base and r["samples_per_s"] else None


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'device':>6} {'procs':>5} {'samples/s':>9} {'effic.':>6} {'data wait':>9} {'1st step':>8} {'RSS/proc':>8} {'RSS sum':>8}"
    lines = [head]
    for r in rows:
        f = lambda v, fmt: format(v, fmt) if v is not None else "-"  # noqa: E731
        lines.append(f"{r['device']:>6} {r['processes']:>5} {f(r['samples_per_s'], '9.2f')} {f(r['efficiency'], '6.2f')} "
                     f"{f(r['data_wait'] and 100 * r['data_wait'], '8.1f')}% {r['first_step_s']:>7.1f}s "
                     f"{r['peak_rss_mb_process']:>6}MB {r['peak_rss_mb_total']:>6}MB")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--volumes", type=int, default=1000, help="volumes made by synth-h5 (90%% train)")
    ap.add_argument("--size", type=int, default=64, help="grid size of the volumes and of data.size")
    ap.add_argument("--steps", type=int, default=40, help="steps per run")
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of throughput and data wait")
    ap.add_argument("--batch", type=int, default=2, help="volumes per process and step")
    ap.add_argument("--workers", type=int, default=0, help="trainer.num_workers")
    ap.add_argument("--procs", type=int, default=2, help="CPU processes to compare with one")
    ap.add_argument("--data", type=Path, default=None, help="data folder (made when it has no train/)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value overrides")
    ap.add_argument("--json", type=Path, default=Path("bench_ddp.json"))
    args = ap.parse_args()
    if args.steps <= args.warmup + 1:
        ap.error("--steps must exceed --warmup + 1")

    import torch

    with tempfile.TemporaryDirectory(prefix="medgen-bench-ddp-") as tmp:
        t0 = time.perf_counter()
        data = make_data(args.data or Path(tmp) / "data", args.volumes, args.size)
        made = time.perf_counter() - t0
        n_train = len(harness.nifti_files(data / "train"))
        print(f"data: {n_train} training volumes at {args.size}³ in {data} ({made:.0f}s)")
        cpu = [train_once(k, "cpu", data, args, Path(tmp) / "runs") for k in (1, args.procs)]
        scaling(cpu)
        gpus = torch.cuda.device_count()
        gpu: list[dict[str, Any]] = []
        if gpus >= 2:
            gpu = [train_once(k, "cuda", data, args, Path(tmp) / "runs") for k in (1, gpus)]
            scaling(gpu)
    print(table(cpu + gpu))
    if not gpu:
        print(f"GPU scaling: skipped ({gpus} GPU(s) here, needs 2 or more)")
    result = {"family": FAMILY, "volumes": args.volumes, "train_volumes": n_train, "size": args.size,
              "batch_per_process": args.batch, "steps": args.steps, "warmup": args.warmup,
              "num_workers": args.workers, "overrides": args.overrides, "cpu": harness.cpu_model(),
              "cores": os.cpu_count(), "torch": torch.__version__, "cpu_runs": cpu, "gpu_runs": gpu,
              "gpus": gpus, "gpu_name": torch.cuda.get_device_name(0) if gpus else None}
    harness.write_json(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
