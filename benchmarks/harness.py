"""The one harness of the benchmarks: train a config for a budget, sample it, score, write JSON + PNG.

Every ``quality_*`` benchmark is these steps in order::

    cfg = harness.build("sparse-gan", harness.cpu_preset("sparse-gan"), overrides, steps=None)
    trained = harness.train(cfg, minutes=30)               # a time and/or step budget
    files, labels = harness.sample(trained.run, 32, out)   # as `medgen sample` writes them
    scores = ...                                          # medgen's metrics, next to a baseline/floor
    harness.write_json(path, result); harness.mip_grid(real, files, path.with_suffix(".png"))

Training runs in this process through ``engine.launch.train_from_config``: the time budget ends
with the same SIGINT a user's Ctrl-C sends, so the trainer finishes its step, writes ``latest.pt``
and stops, and the run is an ordinary, resumable medgen run. The step budget is the config's
``trainer.max_steps`` (:func:`build`'s ``steps``); whichever ends first ends the run.

2D FID goes through ``medgen eval fid --json`` (the command's JSON is the stable interface).
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]


def cpu_preset(family: str) -> Path:
    """``configs/cpu/<family>.yaml`` (file names use ``_`` where family names use ``-``)."""
    return REPO / "configs" / "cpu" / f"{family.replace('-', '_')}.yaml"


def build(family: str, config: Path | None, overrides: Sequence[str], steps: int | None = None) -> Any:
    """The family's config from ``config`` (``None``: its defaults) and ``key=value`` overrides;
    ``steps`` (if given) becomes ``trainer.max_steps``, the step budget."""
    from medgen_cli.config.build import build_config

    extra = [] if steps is None else [f"trainer.max_steps={steps}"]
    return build_config(family, config_file=config, overrides=[*overrides, *extra])


@dataclass(frozen=True)
class Trained:
    """A finished (or budget-stopped) run.

    Attributes:
        run: the run directory.
        steps: the step of its ``latest.pt``.
        minutes: wall minutes of the training call.
        cpu_minutes: CPU minutes this process used meanwhile (on a shared machine, what the run got).
        started: ``time.time()`` when training began (metrics.jsonl times are on this clock).
    """

    run: Path
    steps: int
    minutes: float
    cpu_minutes: float
    started: float


def train(cfg: Any, minutes: float | None = None) -> Trained:
    """Train ``cfg`` until its ``trainer.max_steps`` or, if given, until ``minutes`` have passed."""
    import torch

    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.engine.trainer import TrainingInterrupted

    started, t0, c0 = time.time(), time.perf_counter(), time.process_time()
    timer = None
    if minutes is not None:
        timer = threading.Timer(minutes * 60.0, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.daemon = True
        timer.start()
    try:
        run = train_from_config(cfg)
        assert run is not None
    except TrainingInterrupted as stop:
        assert stop.run_dir is not None
        run = stop.run_dir
    finally:
        if timer is not None:
            timer.cancel()
    step = int(torch.load(run / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")["step"])
    return Trained(run, step, (time.perf_counter() - t0) / 60.0, (time.process_time() - c0) / 60.0, started)


def seconds_per_step(run: Path, after: int = 0) -> float | None:
    """Median wall seconds per step between consecutive training records of ``metrics.jsonl``
    (records of steps before ``after`` left out: imports, data caching and allocator warm-up)."""
    import numpy as np

    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    recs = [(r["step"], r["time"]) for r in recs
            if "time" in r and r.get("step", -1) >= after and any(k.startswith("train/") for k in r)]
    rates = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(recs, recs[1:]) if s1 > s0]
    return float(np.median(rates)) if rates else None


def calibrate(family: str, config: Path | None, overrides: Sequence[str], warmup: int, stop: int) -> float:
    """Wall seconds per step of ``family`` here and now: a throw-away run of ``stop`` steps (no
    validation, checkpoints or images) timed from step ``warmup`` on. Timing a whole short run
    would count the first steps' one-off costs several times over."""
    with tempfile.TemporaryDirectory(prefix="medgen-calibrate-") as tmp:
        cfg = build(family, config, [*overrides, f"output_dir={tmp}", "name=calibration",
                                     f"trainer.log_every={math.gcd(warmup, stop)}", "trainer.val_every=1000000",
                                     "trainer.ckpt_every=1000000", "trainer.image_every=1000000"], steps=stop)
        run = train(cfg).run
        rate = seconds_per_step(run, after=warmup)
    if rate is None:
        raise SystemExit(f"calibration of {family}: no training records between steps {warmup} and {stop}")
    return rate


def sample(run: Path, num: int, out: Path, seed: int = 0, checkpoint: str | Path = "best", device: str = "cpu",
           fmt: str | None = None, **options: Any) -> tuple[list[Path], list[int] | None]:
    """``num`` samples of seeds ``seed``… written to ``out`` as ``medgen sample`` writes them
    (``out`` is replaced); their files and (conditional runs) classes."""
    import shutil

    from medgen_cli.api import load_run

    loaded = load_run(run, checkpoint=str(checkpoint), device=device)
    shutil.rmtree(out, ignore_errors=True)
    samples = loaded.sample(num, seed=seed, **options)
    files = loaded.write(samples, out, formats=fmt)
    labels = getattr(samples, "labels", None)
    return sorted(files), (None if not labels or labels[0] is None else [int(x) for x in labels])


def medgen(*args: str) -> str:
    """Run ``python -m medgen_cli ARGS``; its stdout (exits with its output's tail on failure)."""
    res = subprocess.run([sys.executable, "-m", "medgen_cli", *args], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"medgen {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return res.stdout


def eval_fid(real: Path, fake: Path | str) -> dict[str, Any]:
    """``medgen eval fid REAL FAKE --kid --prdc --json`` on the CPU, parsed (FID, KID, precision,
    recall, density, coverage)."""
    return json.loads(medgen("eval", "fid", str(real), str(fake), "--kid", "--prdc", "--device", "cpu", "--json"))


def write_json(path: Path, result: dict[str, Any]) -> None:
    """``result`` as indented JSON at ``path`` (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s), for the report."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def trilinear_baseline(vol: Any, values: int) -> Any:
    """``vol`` resized trilinearly to a cube of ~``values`` voxels and back (the trivial code of the
    same size as a latent holding ``values`` numbers)."""
    import torch
    import torch.nn.functional as F

    n = max(1, round(values ** (1.0 / vol.ndim)))
    x = torch.as_tensor(vol, dtype=torch.float32)[None, None]
    mode = "trilinear" if vol.ndim == 3 else "bilinear"
    small = F.interpolate(x, size=(n,) * vol.ndim, mode=mode, align_corners=False)
    return F.interpolate(small, size=tuple(vol.shape), mode=mode, align_corners=False)[0, 0].numpy()


def link_split(root: Path, split: str, files: list[Path]) -> None:
    """``root/split/`` holding symlinks to ``files`` (medgen reads ROOT/train and ROOT/val)."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f.resolve())


def nifti_files(folder: Path) -> list[Path]:
    """The NIfTI volumes in ``folder``, sorted (exits when there are none)."""
    files = sorted(p for p in Path(folder).iterdir() if p.name.endswith((".nii.gz", ".nii")))
    if not files:
        raise SystemExit(f"no NIfTI volumes in {folder}")
    return files


def _save_figure(fig: Any, path: Path, dpi: int) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)


def _volume(item: Path | Any) -> Any:
    """A NIfTI file's volume, or an array with its leading item/channel axes of size one dropped."""
    import numpy as np

    from medgen_cli.io import load_nifti

    arr = np.asarray(load_nifti(item)[0] if isinstance(item, (str, Path)) else item, dtype=np.float32)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def mip_grid(real: Sequence[Path | Any], fake: Sequence[Path | Any], path: Path, rows: int = 8,
             titles: tuple[str, str] = ("real", "generated")) -> None:
    """Rows of volumes (NIfTI files or arrays): ``real`` (left) and ``fake`` (right), each as its
    three MIPs (a 2D image is shown once)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(rows, len(real), len(fake))
    fig, axes = plt.subplots(rows, 7, figsize=(10.5, 1.5 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 1, 0.15, 1, 1, 1]})
    for r in range(rows):
        for side, items, c0 in ((titles[0], real, 0), (titles[1], fake, 4)):
            vol = _volume(items[r])
            views = [vol.max(axis=a).T for a in range(3)] if vol.ndim == 3 else [vol.T]
            for a in range(3):
                ax = axes[r, c0 + a]
                ax.set_xticks([]), ax.set_yticks([])
                if a >= len(views):
                    ax.axis("off")
                    continue
                ax.imshow(views[a], cmap="gray", origin="lower", vmin=0, vmax=max(float(vol.max()), 1e-6))
                if r == 0:
                    ax.set_title(f"{side} MIP {'xyz'[a]}" if vol.ndim == 3 else side, fontsize=8)
        axes[r, 3].axis("off")
    fig.tight_layout()
    _save_figure(fig, path, dpi=80)


def image_grid(real: Path, fake: Path, out: Path, n: int = 36, scale: int = 2) -> None:
    """Real images (left) and generated ones (right), ``n`` of each folder's PNGs, side by side."""
    import numpy as np
    from PIL import Image

    def tile(folder: Path) -> np.ndarray:
        files = sorted(folder.glob("*.png"))
        files = [files[i] for i in np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)]
        imgs = [np.asarray(Image.open(f).convert("L")) for f in files]
        cols = int(np.ceil(np.sqrt(len(imgs))))
        h, w = imgs[0].shape
        canvas = np.full((cols * (h + 2), cols * (w + 2)), 255, np.uint8)
        for i, im in enumerate(imgs):
            r, c = divmod(i, cols)
            canvas[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = im
        return canvas

    a, b = tile(real), tile(fake)
    both = np.full((max(a.shape[0], b.shape[0]), a.shape[1] + b.shape[1] + 12), 255, np.uint8)
    both[:a.shape[0], :a.shape[1]] = a
    both[:b.shape[0], a.shape[1] + 12:] = b
    img = Image.fromarray(both)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(out)


def metric_curves(run: Path, path: Path, panels: dict[str, list[str]]) -> Path:
    """One panel per entry of ``panels`` (title → metric names of ``metrics.jsonl``, e.g.
    ``train/loss/d``) against the step; names the run never logged are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 3.5), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels.items()):
        for key in keys:
            recs = [r for r in rows if key in r]
            if recs:
                ax.plot([r["step"] for r in recs], [r[key] for r in recs], label=key.split("/", 1)[-1])
        ax.set_title(f"{run.name}: {title}")
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path, dpi=100)
    return path


def bar_chart(groups: dict[str, dict[str, float]], path: Path, ylabel: str, xlabel: str = "") -> Path:
    """Grouped bars: one group per key of ``groups`` (e.g. a view count), one bar per method in it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(name for bars in groups.values() for name in bars))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(groups) * max(len(series), 1) * 0.5, 3.5))
    for i, name in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [bars.get(name, float("nan")) for bars in groups.values()], width, label=name)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.2)  # room for the legend above the bars
    ax.legend(fontsize=8, ncol=len(series))
    fig.tight_layout()
    _save_figure(fig, path, dpi=100)
    return path
