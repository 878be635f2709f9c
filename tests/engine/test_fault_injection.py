"""Fault injection (issue 12): kill -9 at random points of training and of convert-h5, then
resume → the same result as an uninterrupted run; damaged checkpoints → fallback; a full disk
(a small tmpfs; skipped where mounting is not allowed) → one line, nothing corrupt left.

Seed 0 of each kill test runs by default; the other seeds are marked slow (``--runslow``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from medgen_cli.config.build import build_config
from medgen_cli.data.convert import ConvertOptions, run_convert
from medgen_cli.data.synth import write_synth_h5
from medgen_cli.data.volumes import check_volume_file
from medgen_cli.engine import checkpoint as ckpt_io
from medgen_cli.engine.launch import resume_config, train_from_config
from medgen_cli.errors import MedgenError

REPO = Path(__file__).resolve().parents[2]
TOY = ["trainer.ckpt_every=3", "trainer.keep_last=100", "model.dropout=0.1", "trainer.ema.enabled=true"]
SEEDS = [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]


# ---- helpers ----------------------------------------------------------------------------------
def _train(out: Path, name: str, steps: int, *extra: str) -> Path:
    cfg = build_config("toy", overrides=[f"output_dir={out}", f"name={name}", f"trainer.max_steps={steps}", *TOY, *extra])
    run = train_from_config(cfg)
    assert run is not None
    return run


def _resume(run: Path, steps: int) -> None:
    cfg, _ = resume_config(run, "toy", None, [f"trainer.max_steps={steps}"])
    train_from_config(cfg, resume=run)


def _state(run: Path) -> dict[str, torch.Tensor]:
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    return {**{f"m.{k}": v for k, v in ck["modules"]["net"].items()}, **{f"e.{k}": v for k, v in ck["ema"]["net"].items()}}


def _identical(a: Path, b: Path) -> bool:
    sa, sb = _state(a), _state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                    kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return False


def _assert_all_exit(pids: list[int], message: str, timeout: float = 10) -> None:
    # A loaded machine may take a moment to deliver the parent-death signal.
    t = time.time()
    while any(_alive(p) for p in pids) and time.time() - t < timeout:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), message


def _wait_until(cond: object, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    t = time.time()
    while not cond():  # type: ignore[operator]
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t < timeout, "timed out"
        time.sleep(0.05)


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (the test is skipped where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _grow(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def _outputs(root: Path) -> dict[str, bytes]:
    """Every volume and the manifest (convert.json records the output path, so it differs)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "convert.json"}


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A synthetic H5 and its uninterrupted conversion (the reference every resumed run must equal)."""
    root = tmp_path_factory.mktemp("clouds")
    src = write_synth_h5(root / "s.h5", 120, 512, 0, "fixed", False, False)
    run_convert(ConvertOptions(inputs=[str(src)], out=str(root / "ref"), resolution=(16, 16, 16), workers=1))
    return Path(src), _outputs(root / "ref")


def _convert_opts(src: Path, out: Path, **kw: object) -> ConvertOptions:
    return ConvertOptions(inputs=[str(src)], out=str(out), resolution=(16, 16, 16), **kw)  # type: ignore[arg-type]


def _convert_cmd(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "medgen_cli", "data", "convert-h5", str(src), "--out", str(out), "-r", "16",
            "-j", "2"]


# ---- kill -9 during training ------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_kill9_during_training_then_resume_is_identical(seed: int, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    args = [sys.executable, "-m", "medgen_cli", "train", "toy", "--output-dir", str(out), "--name", "killed",
            "--set", "data.sleep=0.01", "--set", "trainer.max_steps=100000", *[x for o in TOY for x in ("--set", o)]]
    proc = subprocess.Popen(args, cwd=REPO, env=subprocess_env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = out / "toy" / "killed"
    try:
        _wait_until(lambda: (run / "checkpoints" / "latest.pt").is_file(), proc)
        time.sleep(float(np.random.default_rng(seed).uniform(0.0, 1.5)))  # anywhere: mid-step, mid-checkpoint
    finally:
        proc.kill()
        proc.wait()
    stopped = ckpt_io.find_checkpoint(run, "resume")
    assert stopped is not None and not stopped.skipped  # atomic writes: nothing half-written is visible
    target = stopped.ckpt["step"] + 5
    _resume(run, target)
    assert not list((run / "checkpoints").glob(".*"))  # temporaries of the killed write are gone
    assert _identical(run, _train(out, "straight", target))


# ---- kill -9 during convert-h5 (two workers) ----------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_kill9_during_convert_leaves_no_workers_and_resume_is_identical(
        seed: int, tmp_path: Path, subprocess_env: dict[str, str], clouds: tuple[Path, dict[str, bytes]]) -> None:
    src, ref = clouds
    out = tmp_path / "out"
    proc = subprocess.Popen(_convert_cmd(src, out), cwd=REPO, env=subprocess_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_until(lambda: (out / "train").is_dir() and any((out / "train").iterdir()), proc)
        workers = _children(proc.pid)
        time.sleep(float(np.random.default_rng(seed).uniform(0.0, 0.5)))
    finally:
        proc.kill()
        proc.wait()
    assert len(workers) >= 2
    _assert_all_exit(workers, "convert-h5 workers outlived their parent")
    run_convert(_convert_opts(src, out, resume=True, workers=1))
    assert _outputs(out) == ref


def test_ctrl_c_in_convert_prints_how_to_resume(tmp_path: Path, subprocess_env: dict[str, str],
                                                 clouds: tuple[Path, dict[str, bytes]]) -> None:
    src, ref = clouds
    out = tmp_path / "out"
    proc = subprocess.Popen(_convert_cmd(src, out), cwd=REPO, env=subprocess_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_until(lambda: (out / "train").is_dir() and any((out / "train").iterdir()), proc)
        workers = _children(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "Resume with: medgen data convert-h5" in err and "--resume" in err, err
    _assert_all_exit(workers, "convert-h5 workers outlived Ctrl-C")
    run_convert(_convert_opts(src, out, resume=True, workers=1))
    assert _outputs(out) == ref


# ---- damaged checkpoints --------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [0, 17, 0.5, 0.99])
def test_damaged_or_missing_latest_falls_back(cut: float, tmp_path: Path) -> None:
    run = _train(tmp_path, "dmg", 9)
    latest = run / "checkpoints" / "latest.pt"
    data = latest.read_bytes()
    latest.unlink()  # a new inode: latest.pt is a hard link of step_9.pt
    if cut:
        latest.write_bytes(data[: int(cut * len(data)) if cut < 1 else int(cut)])
    found = ckpt_io.find_checkpoint(run, "resume")
    assert found is not None and found.path.name == "step_9.pt"
    assert [s.split(":")[0] for s in found.skipped] == ([] if not cut else ["latest.pt"])
    _resume(run, 12)
    assert _identical(run, _train(tmp_path, "ref", 12))


# ---- a full disk ------------------------------------------------------------------------------------
def test_full_disk_during_training_is_one_line_and_resumable(tmp_path: Path) -> None:
    with small_disk(tmp_path / "small", "300k") as disk:
        with pytest.raises(MedgenError) as info:
            _train(disk, "full", 100000, "trainer.ckpt_every=2", "trainer.log_every=1")
        text = str(info.value)
        assert "disk full while writing" in text and "\n" not in text and "--resume" in text, text
        run = disk / "toy" / "full"
        assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
        last = ckpt_io.find_checkpoint(run, "resume")
        assert last is not None and not last.skipped and last.ckpt["step"] >= 2
        _grow(disk, "64m")
        target = last.ckpt["step"] + 4
        _resume(run, target)
        assert _identical(run, _train(tmp_path / "ref", "ref", target, "trainer.ckpt_every=2", "trainer.log_every=1"))


def test_full_disk_during_convert_keeps_finished_volumes(tmp_path: Path, clouds: tuple[Path, dict[str, bytes]]) -> None:
    src, ref = clouds
    with small_disk(tmp_path / "small", "400k") as disk:
        out = disk / "out"
        with pytest.raises(MedgenError) as info:
            run_convert(_convert_opts(src, out, workers=1))
        text = str(info.value)
        assert "disk full while writing" in text and str(out) in text and "--resume" in text and "\n" not in text
        done = sorted((out / "train").glob("*.nii.gz")) + sorted((out / "val").glob("*.nii.gz"))
        assert done and len(done) < len(ref)
        for p in done:  # every file left is complete
            check_volume_file(p, 3)
        assert not [p for p in out.rglob(".*") if p.name != ".progress.jsonl"]
        _grow(disk, "64m")
        run_convert(_convert_opts(src, out, resume=True, workers=1))
        assert _outputs(out) == ref
        assert json.loads((out / "manifest.json").read_text())
