"""Resume safety (issue 12, items 1-3): the newest readable checkpoint, one-line fallbacks,
``--resume FILE.pt``, and a run directory locked against a second process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medgen_cli.config.build import build_config
from medgen_cli.engine import checkpoint as ckpt_io
from medgen_cli.engine.launch import resume_config, train_from_config
from medgen_cli.engine.rundir import run_lock
from medgen_cli.errors import MedgenError

REPO = Path(__file__).resolve().parents[2]
COMMON = ["trainer.ckpt_every=4", "trainer.keep_last=5", "model.dropout=0.1"]


def _train(tmp_path: Path, name: str, steps: int, *extra: str) -> Path:
    cfg = build_config("toy", overrides=[f"output_dir={tmp_path / 'runs'}", f"name={name}",
                                         f"trainer.max_steps={steps}", *COMMON, *extra])
    run = train_from_config(cfg)
    assert run is not None
    return run


def _resume(run: Path | str, steps: int, *extra: str, fork: str | None = None, overwrite: bool = False) -> Path | None:
    root, _ = ckpt_io.split_checkpoint_path(run)
    cfg, _ = resume_config(root, "toy", None, [f"trainer.max_steps={steps}", *extra])
    return train_from_config(cfg, resume=run, fork=fork, overwrite=overwrite)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["modules"]["net"]


def _same(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def _replace_with(path: Path, data: bytes) -> None:
    # latest.pt is a hard link of the newest step_N.pt: a new inode, as a bad copy would make.
    path.unlink()
    path.write_bytes(data)


def test_missing_latest_resumes_from_newest_step_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    straight = _train(tmp_path, "straight", 16)
    run = _train(tmp_path, "cut", 12)
    (run / "checkpoints" / "latest.pt").unlink()
    step4 = (run / "checkpoints" / "step_4.pt").read_bytes()
    capsys.readouterr()
    _resume(run, 16)
    err = capsys.readouterr().err
    assert "from checkpoints/step_12.pt (step 12)" in err
    assert _same(run, straight)  # continued at 12, did not restart at 0
    assert (run / "checkpoints" / "step_4.pt").read_bytes() == step4  # nothing overwritten


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_latest_falls_back_with_one_line(damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    straight = _train(tmp_path, "straight", 16)
    run = _train(tmp_path, "bad", 12)
    latest = run / "checkpoints" / "latest.pt"
    data = latest.read_bytes()
    _replace_with(latest, data[: len(data) // 2] if damage == "truncated" else b"garbage\n" * 20)
    capsys.readouterr()
    _resume(run, 16)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "latest.pt" in line]
    assert len(lines) == 1 and "skipped unreadable checkpoint latest.pt" in lines[0], err
    assert "truncated or corrupt" in lines[0]
    assert "weights_only" not in err and "Weights only" not in err
    assert "from checkpoints/step_12.pt (step 12)" in err
    assert _same(run, straight)


def test_unreadable_checkpoint_error_is_one_line_without_pytorch_advice(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage\n" * 20)
    with pytest.raises(MedgenError) as info:
        ckpt_io.load_checkpoint(bad)
    text = str(info.value)
    assert str(bad) in text and "\n" not in text and "weights_only" not in text
    # A pickle of foreign objects is refused by the weights-only reader, in our words.
    import pickle

    (tmp_path / "obj.pt").write_bytes(pickle.dumps(Path("x"), protocol=2))  # torch.save's protocol
    with pytest.raises(MedgenError, match="refuses"):
        ckpt_io.load_checkpoint(tmp_path / "obj.pt")


def test_run_with_only_unreadable_checkpoints_is_not_restarted(tmp_path: Path) -> None:
    run = _train(tmp_path, "dead", 8)
    for p in (run / "checkpoints").glob("*.pt"):
        _replace_with(p, b"\x00" * 10)
    with pytest.raises(MedgenError, match="no readable checkpoint") as info:
        _resume(run, 12)
    assert "latest.pt" in str(info.value) and "step_8.pt" in str(info.value)
    assert all(p.read_bytes() == b"\x00" * 10 for p in (run / "checkpoints").glob("*.pt"))


def test_best_is_the_last_resort(tmp_path: Path) -> None:
    run = _train(tmp_path, "bestonly", 8)
    order = [p.name for p in ckpt_io.candidates(run / "checkpoints", "resume")]
    assert order == ["latest.pt", "step_8.pt", "step_4.pt", "best.pt"]
    assert [p.name for p in ckpt_io.candidates(run / "checkpoints", "best")][0] == "best.pt"


def test_resume_accepts_a_checkpoint_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    straight = _train(tmp_path, "straight", 12)
    run = _train(tmp_path, "branch", 12)
    capsys.readouterr()
    _resume(run / "checkpoints" / "step_4.pt", 12, overwrite=True)  # redo steps 5..12 from step 4
    assert "from checkpoints/step_4.pt (step 4)" in capsys.readouterr().err
    assert _same(run, straight)


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = ("import sys, time; from medgen_cli.engine.rundir import run_lock\n"
            "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(MedgenError, match=f"in use by another medgen process \\(pid {proc.pid}\\)"):
            with run_lock(run):
                pass
    finally:
        proc.kill()  # SIGKILL: the OS drops the lock with the process
        proc.wait()
    with run_lock(run):
        with run_lock(run):  # nested in one process: fine
            pass


@pytest.mark.slow  # three CLI processes (~40 s on a loaded machine); the lock itself is tested above
def test_second_process_on_a_training_run_is_refused(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    args = [sys.executable, "-m", "medgen_cli", "train", "toy", "--set", "data.sleep=0.05", "--set",
            "trainer.ckpt_every=2", "--set", "trainer.max_steps=100000", "--output-dir", str(out), "--name", "busy"]
    proc = subprocess.Popen(args, cwd=REPO, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = out / "toy" / "busy"
    try:
        t = time.time()
        while not (run / "checkpoints" / "latest.pt").is_file():
            assert proc.poll() is None and time.time() - t < 120, proc.communicate()
            time.sleep(0.1)
        r = subprocess.run([sys.executable, "-m", "medgen_cli", "train", "toy", "--resume", str(run)], cwd=REPO,
                           env=subprocess_env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "in use by another medgen process" in lines[0], r.stderr
    finally:
        proc.kill()
        proc.wait()
    # kill -9 left no stale lock: resuming works at once.
    r = subprocess.run([sys.executable, "-m", "medgen_cli", "train", "toy", "--resume", str(run), "--set",
                        "trainer.max_steps=2"], cwd=REPO, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "in use" not in r.stderr, r.stderr


# ---- issue 29 item 1: a resume from an older checkpoint never replaces newer history silently ----
def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / "checkpoints").glob("*.pt"))}


def _val_history(run: Path) -> dict[int, float]:
    import json

    return {r["step"]: r["val/loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "val/loss" in r}


def test_resume_from_older_step_is_refused_without_a_choice(tmp_path: Path) -> None:
    run = _train(tmp_path, "hist", 12)
    before = _files(run)
    with pytest.raises(MedgenError) as info:
        _resume(run / "checkpoints" / "step_4.pt", 6)
    text = str(info.value)
    assert "step 4" in text and "step 12" in text and "--fork" in text and "--overwrite" in text, text
    assert "\n" not in text
    assert _files(run) == before  # nothing written, nothing removed


def test_resume_from_older_step_with_fork_continues_in_a_new_run(tmp_path: Path) -> None:
    straight = _train(tmp_path, "straight", 12)
    run = _train(tmp_path, "src", 12)
    before = _files(run)
    fork = _resume(run / "checkpoints" / "step_4.pt", 12, fork="branch")
    assert fork == run.parent / "branch"
    assert _files(run) == before  # the source run is untouched
    assert _same(fork, straight)  # continued from step 4 exactly
    import json

    origin = json.loads((fork / "origin.json").read_text())
    assert origin["step"] == 4 and Path(origin["checkpoint"]) == (run / "checkpoints" / "step_4.pt").resolve()
    assert (fork / "config.yaml").is_file() and "name: branch" in (fork / "config.yaml").read_text()
    # A taken name is refused like a fresh run's.
    with pytest.raises(MedgenError, match="already exists"):
        _resume(run / "checkpoints" / "step_4.pt", 12, fork="branch")


def test_resume_from_older_step_with_overwrite_truncates_history(tmp_path: Path) -> None:
    run = _train(tmp_path, "trunc", 12, "trainer.val_every=2")
    _resume(run / "checkpoints" / "step_4.pt", 6, "trainer.val_every=2", overwrite=True)
    names = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))
    assert names == ["best.pt", "latest.pt", "step_4.pt"]  # step_8, step_12 removed
    latest = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    history = _val_history(run)  # metrics.jsonl: steps 2, 4, 6 after the truncation
    assert sorted(history) == [2, 4, 6]
    best_step = min(history, key=history.__getitem__)
    assert latest["step"] == 6 and best["step"] == best_step
    assert latest["best"]["value"] == pytest.approx(history[best_step]) and latest["best"]["step"] == best_step


# ---- issue 29 item 3: data.root is stored absolute and may move to a copy of the same files -------
TINY_AE = REPO / "configs" / "tiny" / "autoencoder.yaml"


def _nifti_set(root: Path) -> Path:
    import nibabel as nib
    import numpy as np

    for split, n in (("train", 2), ("val", 1)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            vol = np.random.default_rng(i).random((16, 16, 16), dtype=np.float32)
            nib.save(nib.Nifti1Image(vol, np.eye(4)), str(root / split / f"v{i}.nii.gz"))
    return root


def _ae_resume(run: Path, *overrides: str) -> list[str]:
    notes: list[str] = []
    cfg, changed = resume_config(run, "autoencoder", None, list(overrides), notify=notes.append)
    train_from_config(cfg, resume=run)
    return notes + changed


def test_relative_data_root_is_stored_absolute_and_may_move_to_the_same_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import yaml

    _nifti_set(tmp_path / "d")
    monkeypatch.chdir(tmp_path)
    cfg = build_config("autoencoder", config_file=TINY_AE, overrides=[
        "data.root=d", "output_dir=runs", "name=rel", "trainer.max_steps=1", "trainer.val_every=100",
        "data.cache_rate=0"])
    run = train_from_config(cfg)
    assert run is not None
    run = run.resolve()
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["root"] == str(tmp_path / "d")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # another working directory: the run still finds its data
    _ae_resume(run, "trainer.max_steps=2")
    # The data moved: a copy with the same names and sizes is accepted, with a note.
    shutil.move(str(tmp_path / "d"), str(tmp_path / "moved"))
    notes = _ae_resume(run, "trainer.max_steps=3", f"data.root={tmp_path / 'moved'}")
    assert any("same 3 files" in n for n in notes) and "data.root" in notes, notes
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["root"] == str(tmp_path / "moved")
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"] == 3
    # Other data is refused in one line, and nothing is trained.
    shutil.copytree(tmp_path / "moved", tmp_path / "other")
    (tmp_path / "other" / "train" / "v1.nii.gz").unlink()
    with pytest.raises(MedgenError, match="does not hold the run's data") as info:
        _ae_resume(run, "trainer.max_steps=4", f"data.root={tmp_path / 'other'}")
    assert "missing train/v1.nii.gz" in str(info.value) and "\n" not in str(info.value)
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"] == 3


# ---- issue 29 item 6: a refused name creates nothing; an early stop is said and resumable --------
def test_bad_run_name_creates_no_folder(tmp_path: Path) -> None:
    cfg = build_config("toy", overrides=[f"output_dir={tmp_path / 'runs'}", "name=a/../../b"])
    with pytest.raises(MedgenError, match="run name"):
        train_from_config(cfg)
    assert not (tmp_path / "runs").exists()


def test_stop_before_the_first_step_is_reported_and_resumable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    from medgen_cli.engine.trainer import TrainingInterrupted
    from tests.toy_family import ToyFamily

    straight = _train(tmp_path, "straight", 8)

    def ctrl_c(self: ToyFamily, ctx: object) -> None:  # Ctrl-C while the model is being set up
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)

    with monkeypatch.context() as m:
        m.setattr(ToyFamily, "prepare", ctrl_c)
        with pytest.raises(TrainingInterrupted) as info:
            _train(tmp_path, "early", 8)
    run = tmp_path / "runs" / "toy" / "early"
    exc = info.value
    assert exc.run_dir == run and exc.step == 0 and not exc.saved and exc.exit_code == 130
    assert "config.yaml" in exc.left() and "step 0" in exc.left()
    assert (run / "config.yaml").is_file() and not list((run / "checkpoints").glob("*.pt"))
    _resume(run, 8)  # starts at step 0 from the saved config
    assert _same(run, straight)


def test_cli_refuses_an_older_checkpoint_in_one_line_and_forks_on_request(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from medgen_cli.cli.app import main

    def cli(*args: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        try:
            main(["train", "toy", *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]

    run = _train(tmp_path, "cli", 12)
    step4 = str(run / "checkpoints" / "step_4.pt")
    code, lines = cli("--resume", step4, "--set", "trainer.max_steps=14")
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "--fork NAME" in lines[0], lines
    code, lines = cli("--resume", step4, "--set", "trainer.max_steps=6", "--fork", "b2")
    assert code == 0 and any(line.startswith(f"forked {run} at step 4 into") for line in lines), lines
    assert torch.load(run.parent / "b2" / "checkpoints" / "latest.pt", weights_only=True)["step"] == 6
    code, lines = cli("--resume", step4, "--fork", "b3", "--overwrite")
    assert code == 2 and len(lines) == 1 and "exclude each other" in lines[0], lines
