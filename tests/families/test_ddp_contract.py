"""Every registered family under DDP: two gloo processes (torchrun) on the CPU, tiny presets.

Per family (its case in :mod:`tests.families.ddp_cases`; a registered family without one fails):

(a) **DDP equals one process.** Two ranks that each read the batches one process reads and keep
    its RNG stream (the ``mirror`` worker) train a global batch ``[S; S]`` whose gradient is the
    gradient of ``S``: they must end with exactly the weights, EMA, optimizer and family state of
    one process on ``S``, bit for bit (the ranks' gradients are equal, so DDP's average is exact).
    A global batch of two *different* halves cannot be compared bit for bit with one process:
    each rank draws its own noise (z, timesteps, augmentation), which one process drawing for
    ``2B`` samples does not reproduce. Settings counted in images (an EMA half-life, ADA's speed)
    are halved for the reference, since the DDP batch counts twice the images; a family that
    counted only its own rank's images fails here.
(b) **Ranks agree.** In a real run (each rank its own shard and noise stream) both ranks end
    with the same weights, batch-norm statistics, EMA copies, optimizer state and family state
    (ADA's ``p`` and counters, FID history, best), and different RNG states (per-rank noise).
(c) **Decided once.** One run folder; rank 0 writes each checkpoint, metrics row and "new best"
    line once; ``best.pt`` holds the best validation value logged.
(d) **Resume is exact.** K steps, stop, resume to 2K (a fork of the straight run's ``step_K.pt``)
    gives each rank exactly what the straight 2K run gave it (weights, optimizers, EMA, family
    state and RNG), so the checkpoint must carry every rank's RNG streams.

Cost: each case starts 7 processes (~25-60 s of CPU); the default suite keeps one family, the
one with the most DDP-specific state (stylegan2: ADA, lazy R1 and path length, EMA in images);
``--runslow`` runs all.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from medgen_cli.contract.registry import all_specs
from tests.families.ddp_cases import DDP_CASES, STEPS, DDPCase, minkowski_available

REPO = Path(__file__).resolve().parents[2]
REGISTERED = sorted(all_specs())
FAST = {"stylegan2"}
K = STEPS // 2
COMMON = [f"trainer.max_steps={STEPS}", f"trainer.ckpt_every={K}", f"trainer.val_every={K}", "trainer.log_every=1",
          "trainer.image_every=1000", "trainer.batch_size=2", "trainer.device=cpu", "trainer.num_workers=0",
          "trainer.keep_last=5"]


def _case_params() -> list[Any]:
    params = []
    for cid in sorted(DDP_CASES):
        marks = [] if cid in FAST else [pytest.mark.slow]
        if cid.endswith("/minkowski") and not minkowski_available():
            marks.append(pytest.mark.skip(reason="MinkowskiEngine is not importable"))
        params.append(pytest.param(cid, marks=marks, id=cid))
    return params


@dataclass
class DDPRuns:
    """The four runs of one case: straight (2K, two ranks), resumed (K → 2K, two ranks),
    mirror (two ranks reading one process's batches) and single (one process)."""

    root: Path
    case: DDPCase

    def dump(self, run: str, rank: int = 0) -> dict[str, Any]:
        return torch.load(self.root / "dumps" / run / f"rank{rank}.pt", weights_only=False)

    @property
    def straight(self) -> Path:
        return self.root / "runs" / self.case.family / "straight"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _launch(spec: dict[str, Any], nproc: int, root: Path, tag: str) -> None:
    path = root / f"{tag}.json"
    path.write_text(json.dumps(spec))
    head = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                 f"--nproc-per-node={nproc}"]
    r = subprocess.run([*head, "-m", "tests.families.ddp_worker", str(path)], cwd=REPO, env=_env(), text=True,
                       capture_output=True, timeout=900)
    assert r.returncode == 0, f"{tag} failed:\n{r.stderr[-4000:]}"


def _train(case: DDPCase, base: list[str], root: Path) -> None:
    out = root / "runs"

    def spec(tag: str, extra: list[str], **kw: Any) -> dict[str, Any]:
        folder = out if tag in ("straight", "resumed") else root / "reference"
        return {"family": case.family, "overrides": [*base, *COMMON, f"output_dir={folder}", f"name={tag}", *extra],
                "dump": str(root / "dumps" / tag), **kw}

    ddp_images = [f"{k}={v}" for k, v in case.per_image.items()]
    one_images = [f"{k}={v / 2}" for k, v in case.per_image.items()]
    _launch(spec("straight", ddp_images), 2, root, "straight")
    step_k = out / case.family / "straight" / "checkpoints" / f"step_{K}.pt"
    _launch(spec("resumed", ddp_images, resume=str(step_k), fork="resumed"), 2, root, "resumed")
    _launch(spec("mirror", ddp_images, mirror=True), 2, root, "mirror")
    _launch(spec("single", one_images), 1, root, "single")


@pytest.fixture(scope="module")
def ddp_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], DDPRuns]:
    """``ddp_runs(case_id)``: the case's four runs, trained once per module."""
    done: dict[str, DDPRuns] = {}

    def get(cid: str) -> DDPRuns:
        if cid not in done:
            case = DDP_CASES[cid]
            root = tmp_path_factory.mktemp("ddp-" + cid.replace("/", "-"))
            _train(case, case.base(request, root / "data"), root)
            done[cid] = DDPRuns(root, case)
        return done[cid]

    return get


def _differences(a: Any, b: Any, rtol: float, path: str = "") -> list[str]:
    """Where nested checkpoint-like values ``a`` and ``b`` differ (``rtol`` 0: bit for bit)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(map(str, a.keys() ^ b.keys()))}"]
        return [d for k in a for d in _differences(a[k], b[k], rtol, f"{path}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, rtol, f"{path}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return [f"{path}: {a.dtype}{list(a.shape)} != {b.dtype}{list(b.shape)}"]
        same = torch.equal(a, b) if rtol == 0 or not a.is_floating_point() else \
            torch.allclose(a, b, rtol=rtol, atol=rtol, equal_nan=True)
        return [] if same else [f"{path}: max |diff| {(a.double() - b.double()).abs().max().item():.3g}"]
    if isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or (a == b if rtol == 0 else math.isclose(a, b, rel_tol=rtol))
        return [] if same else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def test_every_registered_family_has_a_ddp_case() -> None:
    covered = {c.family for c in DDP_CASES.values()}
    missing = sorted(set(REGISTERED) - covered)
    assert missing == [], f"registered families without a DDP case in tests/families/ddp_cases.py: {missing}"
    assert sorted(covered - set(REGISTERED)) == []


@pytest.mark.parametrize("cid", _case_params())
def test_ddp_equals_one_process(cid: str, ddp_runs: Callable[[str], DDPRuns]) -> None:
    runs = ddp_runs(cid)
    single = _without(runs.dump("single"), "rng", "rng_ranks")
    for rank in (0, 1):
        diff = _differences(_without(runs.dump("mirror", rank), "rng", "rng_ranks"), single, runs.case.rtol)
        assert diff == [], f"rank {rank} of DDP != one process ({runs.case.why or 'bit for bit'}): {diff[:8]}"


@pytest.mark.parametrize("cid", _case_params())
def test_ranks_agree_on_weights_ema_and_augmentation(cid: str, ddp_runs: Callable[[str], DDPRuns]) -> None:
    runs = ddp_runs(cid)
    r0, r1 = runs.dump("straight", 0), runs.dump("straight", 1)
    logs = runs.case.per_rank_records
    diff = _differences({**_without(r0, "rng"), "family_state": _without(r0["family_state"], *logs)},
                        {**_without(r1, "rng"), "family_state": _without(r1["family_state"], *logs)}, 0.0)
    assert diff == [], f"ranks disagree: {diff[:8]}"
    assert r0["step"] == STEPS
    assert not torch.equal(r0["rng"]["torch"], r1["rng"]["torch"]), "the ranks draw the same noise"


@pytest.mark.parametrize("cid", _case_params())
def test_validation_and_best_are_decided_once(cid: str, ddp_runs: Callable[[str], DDPRuns]) -> None:
    runs = ddp_runs(cid)
    run = runs.straight
    assert sorted(p.name for p in run.parent.iterdir()) == ["resumed", "straight"]
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    pairs = [(r["step"], k) for r in rows for k in r if "/" in k]
    assert len(pairs) == len(set(pairs)), "a metric was logged twice at one step"
    assert sorted({r["step"] for r in rows if any(k.startswith("train/") for k in r)}) == list(range(1, STEPS + 1))
    val = {r["step"]: r for r in rows if any(k.startswith("val/") for k in r)}
    best_lines = [line for line in (run / "log.txt").read_text().splitlines() if "new best" in line]
    assert len(best_lines) == len(set(best_lines))
    expected = [f"step_{s}.pt" for s in range(K, STEPS + 1, K)] + ["latest.pt"]
    best = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["best"]
    if best["value"] is None:
        assert ckpts == sorted(expected) and best_lines == []
        return
    assert ckpts == sorted([*expected, "best.pt"])
    assert set(val) <= set(range(K, STEPS + 1, K)) and best["step"] in val
    key = best["metric"] if best["metric"].startswith("val/") else f"val/{best['metric']}"
    assert val[best["step"]][key] == pytest.approx(best["value"], rel=1e-12)
    saved = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert saved["step"] == best["step"] and saved["best"]["value"] == best["value"]
    assert runs.dump("straight", 0)["best"] == runs.dump("straight", 1)["best"] == best


@pytest.mark.parametrize("cid", _case_params())
def test_resume_under_ddp_is_exact(cid: str, ddp_runs: Callable[[str], DDPRuns]) -> None:
    runs = ddp_runs(cid)
    for rank in (0, 1):
        diff = _differences(runs.dump("resumed", rank), runs.dump("straight", rank), 0.0)
        assert diff == [], f"rank {rank}: resumed (K={K} -> {STEPS}) != straight: {diff[:8]}"
