"""What the 2D GAN quality benchmarks share: the sets, one run (train, sample, score against the
set's real-vs-real floor) and the report (JSON rows + markdown tables of ratios across sets).

Used by ``quality_gan2d`` (CPU presets) and ``gpu_gan2d`` (GPU presets); the sets come from
``python -m benchmarks.make_gan2d_data data/gan2d``. Runs measured separately (one family × set per
machine, say) go into one table with::

    python -m benchmarks.gan2d_report OUT.json IN.json [IN.json ...]
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

if not __package__:  # run as a file, where the package `benchmarks` cannot be imported
    raise SystemExit(f"run it from the repository root as: python -m benchmarks.{Path(__file__).stem} ...")

from benchmarks import harness

FAMILIES = ("fastgan", "sagan", "stylegan2")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}

#: The panels of ``<json>.losses.png``: title → metrics.jsonl names (a family's missing ones are left out).
LOSS_PANELS = {"losses": ["train/loss/d", "train/loss/g", "train/loss/r1", "train/loss/pl"],
               "D outputs": ["train/d/real", "train/d/fake"],
               "grad norms, ADA p": ["train/grad_norm/d", "train/grad_norm/g", "train/aug/p"]}


def families(arg: str) -> list[str]:
    """``all`` → every 2D family; otherwise the one named."""
    return list(FAMILIES) if arg == "all" else [arg]


def find_sets(root: Path, names: str | None) -> dict[str, tuple[Path, Path]]:
    """Set name → (train, ref) folders under ``root`` (as ``make_gan2d_data`` writes them);
    ``names`` a comma list, ``None`` for every set built there (exits with the fix when none is)."""
    root = Path(root)
    if names:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
    else:
        wanted = sorted(p.name for p in root.iterdir() if (p / "train").is_dir()) if root.is_dir() else []
    found: dict[str, tuple[Path, Path]] = {}
    for name in wanted:
        if name in ("cell", "immunohistochemistry"):
            raise SystemExit(f"{name!r} is reserved for the team's checks")
        train, ref = root / name / "train", root / name / "ref"
        if not (train.is_dir() and ref.is_dir()):
            raise SystemExit(f"no set {name!r} in {root} (train/ and ref/); make it: "
                             f"python -m benchmarks.make_gan2d_data {root} --sets {name}")
        found[name] = (train, ref)
    if not found:
        raise SystemExit(f"no sets in {root}; make them: python -m benchmarks.make_gan2d_data {root}")
    return found


def count_images(folder: Path) -> int:
    return sum(1 for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def curve(run_dir: Path, start: float) -> list[dict[str, float]]:
    """In-training FID/KID records as minutes since ``start`` (a ``time.time()``)."""
    points: list[dict[str, float]] = []
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return points
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "val/fid" in rec:
            points.append({"minutes": round((rec["time"] - start) / 60, 2), "step": rec["step"],
                           "fid": rec["val/fid"], "kid": rec.get("val/kid"), "coverage": rec.get("val/coverage")})
    return points


class Floors:
    """FID/KID/coverage of each set's REF against its TRAIN, computed once per set."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, train: Path, ref: Path | None) -> dict[str, Any] | None:
        if ref is None:
            return None
        key = (str(train), str(ref))
        if key not in self._done:
            self._done[key] = harness.eval_fid(train, ref)
        return self._done[key]


def score(run: dict[str, Any], train: Path, samples: Path, floor: dict[str, Any] | None) -> None:
    """Add FID/KID/PRDC of ``samples`` against ``train`` and, with a floor, the ratios to ``run``."""
    scored = harness.eval_fid(train, samples)
    run.update(fid=scored["fid"], kid=scored["kid"], kid_std=scored["kid_std"],
               kid_subset_size=scored.get("kid_subset_size"),
               **{k: scored[k] for k in ("precision", "recall", "density", "coverage")})
    if floor is not None:
        run.update(fid_floor=floor["fid"], kid_floor=floor["kid"], coverage_floor=floor["coverage"],
                   ratio_to_floor=scored["fid"] / floor["fid"], goal_met=scored["fid"] <= 1.5 * floor["fid"],
                   coverage_to_floor=scored["coverage"] / floor["coverage"] if floor["coverage"] else None)


def train_set(family: str, config: Path, train: Path, overrides: Sequence[str], *, steps: int | None,
              minutes: float | None, runs_dir: Path, name: str) -> tuple[dict[str, Any], harness.Trained]:
    """Train ``config`` on ``train`` for the budget (steps and/or minutes, whichever ends first)."""
    cfg = harness.build(family, config, [f"data.root={train}", *overrides, f"output_dir={runs_dir}", f"name={name}"],
                        steps=steps)
    trained = harness.train(cfg, minutes)
    warm = min(100, max(trained.steps // 10, 1))
    sps = harness.seconds_per_step(trained.run, after=warm)
    run: dict[str, Any] = {
        "family": family, "config": str(config), "data": str(train), "run": str(trained.run),
        "minutes": round(trained.minutes, 2), "steps": trained.steps, "budget_steps": steps, "budget_minutes": minutes,
        "seconds_per_step": None if sps is None else round(sps, 4),
        "seconds_per_step_wall": round(trained.minutes * 60 / max(trained.steps, 1), 4)}
    return run, trained


def sample_and_score(run: dict[str, Any], trained: harness.Trained, train: Path, floor: dict[str, Any] | None,
                     num_samples: int, png_stem: Path | None, device: str = "cpu", scoring: bool = True) -> Path:
    """Sample ``best.pt`` (``latest.pt`` if none), score it, draw the grid and loss curves."""
    points = curve(trained.run, trained.started)
    samples = trained.run / "quality_samples"
    harness.sample(trained.run, num_samples, samples, seed=0, device=device, fmt="png", batch_size=50)
    run["num_samples"] = num_samples
    run["samples"] = str(samples)
    if scoring:
        score(run, train, samples, floor)
    run["curve"] = points
    run["best_step"] = min(points, key=lambda p: p["fid"])["step"] if points else None
    if png_stem is not None:
        png = png_stem.with_suffix(".png")
        harness.image_grid(train, samples, png)
        run["grid"] = str(png)
        run["loss_curves"] = str(harness.metric_curves(trained.run, png_stem.with_suffix(".losses.png"), LOSS_PANELS))
    return samples


def png_stem(json_path: Path, family: str, set_name: str, single: bool) -> Path:
    """``<json>`` itself for a single run (``<json>.png``, ``<json>.losses.png``), else
    ``<json stem>.<family>.<set>``."""
    return json_path if single else json_path.with_name(f"{json_path.stem}.{family}.{set_name}.json")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios to the floor as ``{family: {set: ratio}}`` and each family's mean over sets."""
    ratios: dict[str, dict[str, float]] = {}
    for r in runs:
        if r.get("ratio_to_floor") is not None:
            ratios.setdefault(r["family"], {})[r["set"]] = round(r["ratio_to_floor"], 3)
    means = {f: round(statistics.fmean(v.values()), 3) for f, v in ratios.items() if v}
    return {"ratios": ratios, "mean_ratio": means}


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def markdown(runs: list[dict[str, Any]], summary: dict[str, Any], header: str) -> str:
    """The per-run table (set × family) and the table of ratios across sets with their mean."""
    lines = [header, "",
             "| set | family | steps | minutes | s/step | FID | floor | ratio | KID | precision | recall | coverage (floor) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        sps = r.get("seconds_per_step") or r.get("seconds_per_step_wall")
        lines.append(
            f"| {r['set']} | {r['family']} | {r['steps']} | {r['minutes']:.1f} | {_fmt(sps, '.3f')} | "
            f"{_fmt(r.get('fid'), '.1f')} | {_fmt(r.get('fid_floor'), '.1f')} | {_fmt(r.get('ratio_to_floor'), '.2f')} | "
            f"{_fmt(r.get('kid'), '.4f')} | {_fmt(r.get('precision'), '.2f')} | {_fmt(r.get('recall'), '.2f')} | "
            f"{_fmt(r.get('coverage'), '.2f')} ({_fmt(r.get('coverage_floor'), '.2f')}) |")
    ratios, fams = summary["ratios"], list(summary["ratios"])
    if fams:
        sets = list(dict.fromkeys(r["set"] for r in runs))
        lines += ["", "FID / floor:", "", "| set | " + " | ".join(fams) + " |", "| --- |" + " ---: |" * len(fams)]
        lines += [f"| {s} | " + " | ".join(_fmt(ratios[f].get(s), ".2f") for f in fams) + " |" for s in sets]
        lines.append("| **mean** | " + " | ".join(f"**{summary['mean_ratio'][f]:.2f}**" for f in fams) + " |")
    return "\n".join(lines)


def report(path: Path, runs: list[dict[str, Any]], meta: dict[str, Any], header: str) -> dict[str, Any]:
    """Write the JSON (``meta``, ``runs``, ``ratios``, ``mean_ratio``, ``table``; a single run's keys
    also at the top, as before there were sets) and print the markdown tables."""
    summary = summarize(runs)
    table = markdown(runs, summary, header)
    result: dict[str, Any] = {**meta, "runs": runs, **summary, "table": table}
    if len(runs) == 1:
        result = {**runs[0], **result}
    harness.write_json(path, result)
    print(table, flush=True)
    return result


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def merge(out: Path, inputs: Sequence[Path]) -> dict[str, Any]:
    """The runs of several ``quality_gan2d``/``gpu_gan2d`` JSONs in one report (the first one's
    header facts; each run keeps its own machine, budget and s/step)."""
    docs = [json.loads(Path(p).read_text()) for p in inputs]
    runs = [dict(r, source_json=str(p)) for p, d in zip(inputs, docs) for r in d.get("runs", [])]
    machines = sorted({d.get("cpu_model") or d.get("device") or "?" for d in docs})
    meta = {"merged_from": [str(p) for p in inputs], "machines": machines,
            "families": list(dict.fromkeys(r["family"] for r in runs)), "sets": list(dict.fromkeys(r["set"] for r in runs))}
    budgets = sorted({str(d.get("budget_steps") or d.get("budget_epochs") or d.get("budget_minutes")) for d in docs})
    header = f"merged: {len(runs)} runs, budget(s) {', '.join(budgets)}, on {'; '.join(machines)}"
    return report(out, runs, meta, header)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Merge quality_gan2d/gpu_gan2d JSONs into one table")
    ap.add_argument("out", type=Path)
    ap.add_argument("inputs", type=Path, nargs="+")
    args = ap.parse_args()
    merge(args.out, args.inputs)


if __name__ == "__main__":
    main()
