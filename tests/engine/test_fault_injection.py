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


# ---- issue 29 items 2 and 4: non-finite or unreadable data, divergence --------------------------
def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from tests.conftest import run_cli

    code, _, err = run_cli(args, capsys)
    return code, err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _image_set(root: Path, n: int = 8) -> Path:
    from PIL import Image

    root.mkdir(parents=True)
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 255, (16, 16), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"im{i}.png")
    return root


def _train_sagan(root: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    return _cli(["train", "sagan", "--config", str(REPO / "configs" / "tiny" / "sagan.yaml"), "--set",
                 f"data.root={root}", "--set", "trainer.max_steps=2", "--output-dir", str(out), "--name", "t"], capsys)


def test_nan_in_a_volume_is_refused_before_the_run_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import nibabel as nib

    root = tmp_path / "d"
    for split, n in (("train", 3), ("val", 1)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            vol = np.random.default_rng(i).random((16, 16, 16), dtype=np.float32)
            if split == "train" and i == 1:
                vol[4:7, 4:7, 4:7] = np.nan  # one 27-voxel NaN block, as in the report
            nib.save(nib.Nifti1Image(vol, np.eye(4)), str(root / split / f"v{i}.nii.gz"))
    out = tmp_path / "runs"
    code, err = _cli(["train", "autoencoder", "--config", str(REPO / "configs" / "tiny" / "autoencoder.yaml"),
                      "--set", f"data.root={root}", "--set", "trainer.max_steps=2", "--output-dir", str(out),
                      "--name", "t"], capsys)
    line = _one_line(err)
    assert code == 2 and str(root / "train" / "v1.nii.gz") in line and "27 non-finite" in line, err
    assert not (out / "autoencoder").exists()


def test_nan_in_an_image_set_is_refused_before_the_run_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    root = _image_set(tmp_path / "imgs")
    bad = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    bad[3, 3] = np.nan
    Image.fromarray(bad, mode="F").save(root / "float.tif")  # 32-bit float TIFF: can hold NaN
    out = tmp_path / "runs"
    code, err = _train_sagan(root, out, capsys)
    line = _one_line(err)
    assert code == 2 and str(root / "float.tif") in line and "non-finite" in line, err
    assert not out.exists()


@pytest.mark.parametrize("damage", ["text", "truncated"])
def test_unreadable_image_is_refused_before_the_run_exists(damage: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = _image_set(tmp_path / "imgs")
    bad = root / "im5.png"
    if damage == "text":
        bad.write_text("not an image\n")
    else:
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "runs"
    code, err = _train_sagan(root, out, capsys)
    line = _one_line(err)
    assert code == 2 and str(bad) in line and "Traceback" not in err, err
    assert not out.exists()


def test_divergence_stops_with_one_line_and_resumes_with_a_lower_lr(tmp_path: Path) -> None:
    # The LR jumps from 1e-2 to 1e20 after step 10 (a step schedule with gamma=1e22): Adam moves
    # each weight by ~lr, so the squared error overflows float32 a step later (a run that
    # diverges by itself, not from its data), while the checkpoint of step 10 is still sane.
    schedule = ["trainer.lr_schedule.kind=step", "trainer.lr_schedule.step_size=10", "trainer.lr_schedule.gamma=1e22"]
    with pytest.raises(MedgenError) as info:
        _train(tmp_path, "div", 100, "model.lr=1e-2", *schedule, "trainer.ckpt_every=2")
    text = str(info.value)
    run = tmp_path / "toy" / "div"
    latest = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    stopped = int(text.split("step ", 1)[1].split(":")[0].split()[0])
    assert "train/loss" in text and "\n" not in text and "--resume" in text and "model.lr" in text, text
    assert 2 <= latest["step"] < stopped, (latest["step"], text)
    assert all(torch.isfinite(t).all() for t in _state(run).values())  # the last finite state
    assert all(n < stopped for n, _ in ckpt_io.step_checkpoints(run / "checkpoints"))
    # Resumed with a base LR 1e22 times lower, the LR after the jump is 1e-2 again: it trains on.
    cfg, changed = resume_config(run, "toy", None, ["trainer.max_steps=19", "model.lr=1e-24"])
    assert "model.lr" in changed
    train_from_config(cfg, resume=run)
    done = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    group = done["optimizers"]["opt"]["param_groups"][0]
    assert done["step"] == 19 and group["initial_lr"] == pytest.approx(1e-24)
    assert group["lr"] == pytest.approx(1e-2)  # the schedule's position is kept: 1e-24 * 1e22
    assert all(torch.isfinite(t).all() for t in _state(run).values())
