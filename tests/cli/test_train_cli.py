"""`medgen train` end to end through subprocesses: layout, errors, resume, signals, kill -9, DDP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]


def medgen(args: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medgen_cli", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=300, **kw)  # type: ignore[call-overload]


def test_help_and_version_are_instant(subprocess_env: dict[str, str]) -> None:
    t = time.perf_counter()
    r = medgen(["--help"], subprocess_env)
    assert r.returncode == 0 and "train" in r.stdout and "sample" in r.stdout
    r = medgen(["--version"], subprocess_env)
    assert r.returncode == 0 and r.stdout.startswith("medgen ")
    assert time.perf_counter() - t < 30  # generous: the CI machine may be loaded
    # --help must not import torch (that is what keeps it instant).
    code = "import sys; from medgen_cli.cli.app import app; assert 'torch' not in sys.modules, 'torch imported'"
    env = {k: v for k, v in subprocess_env.items() if k != "MEDGEN_FAMILY_MODULES"}  # toy imports torch
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env).returncode == 0


def test_train_help_lists_config_keys(subprocess_env: dict[str, str]) -> None:
    r = medgen(["train", "toy", "--help"], subprocess_env)
    assert r.returncode == 0
    assert "trainer.max_steps = 1000" in r.stdout and "model.lr" in r.stdout


def test_train_writes_run_directory_and_sample_dispatches(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    r = medgen(["train", "toy", "--set", "trainer.max_steps=12", "--set", "trainer.ckpt_every=6",
                "--set", "trainer.log_every=3", "--set", "trainer.val_every=6", "--output-dir", str(out),
                "--name", "demo"], subprocess_env)
    assert r.returncode == 0, r.stderr
    run = out / "toy" / "demo"
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_steps"] == 12
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "latest.pt", "step_12.pt", "step_6.pt"]
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if "train/loss" in l] == [3, 6, 9, 12]
    assert [l["step"] for l in lines if "val/loss" in l] == [6, 12]
    assert "finished at step 12" in (run / "log.txt").read_text()
    # Same name again is refused (nothing overwritten).
    r2 = medgen(["train", "toy", "--output-dir", str(out), "--name", "demo"], subprocess_env)
    assert r2.returncode == 2 and "already exists" in r2.stderr and "Traceback" not in r2.stderr
    # Sampling dispatches on the run's family.
    r3 = medgen(["sample", str(run), "--num", "5", "--out", str(tmp_path / "s")], subprocess_env)
    assert r3.returncode == 0, r3.stderr
    import numpy as np

    files = sorted((tmp_path / "s").glob("sample_*.npy"))
    assert np.stack([np.load(f) for f in files]).shape == (5, 1, 4)  # one file per sample, seeds 0..4
    r4 = medgen(["sample", str(run), "--num", "5", "--out", str(tmp_path / "s")], subprocess_env)
    assert r4.returncode == 2 and "--overwrite" in r4.stderr


def test_dry_run_prints_resolved_config(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    r = medgen(["train", "toy", "--dry-run", "--set", "model.hidden=7", "--output-dir", str(tmp_path)], subprocess_env)
    assert r.returncode == 0
    cfg = yaml.safe_load(r.stdout)
    assert cfg["family"] == "toy" and cfg["model"]["hidden"] == 7
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "trainer.max_step=3"], "did you mean 'trainer.max_steps'"),
        (["--set", "trainer.max_steps=abc"], "trainer.max_steps"),
        (["--config", "/no/such.yaml"], "config file not found"),
        (["--resume", "/no/such/run"], "not a medgen run directory"),
        (["--require-fid"], "--require-fid applies to families that track FID"),
    ],
)
def test_user_errors_are_one_line_exit_2(args: list[str], needle: str, subprocess_env: dict[str, str]) -> None:
    r = medgen(["train", "toy", *args], subprocess_env)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len([l for l in r.stderr.splitlines() if l.strip()]) == 1
    r = medgen(["--debug", "train", "toy", *args], subprocess_env)
    assert "Traceback" in r.stderr


def test_resume_rules(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    assert medgen(["train", "toy", "--set", "trainer.max_steps=4", "--output-dir", str(out)], subprocess_env).returncode == 0
    run = out / "toy" / "run-001"
    r = medgen(["train", "toy", "--resume", str(run)], subprocess_env)
    assert r.returncode == 0 and "already finished at step 4" in r.stderr
    r = medgen(["train", "toy", "--resume", str(run), "--set", "model.hidden=99"], subprocess_env)
    assert r.returncode == 2 and "cannot change 'model.hidden' on resume" in r.stderr
    r = medgen(["train", "toy", "--resume", str(run), "--set", "trainer.max_steps=8"], subprocess_env)
    assert r.returncode == 0, r.stderr
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"] == 8


def _wait_for_step(path: Path, step: int, proc: subprocess.Popen[str], timeout: float = 120) -> int:
    t = time.time()
    while time.time() - t < timeout:
        if path.is_file():
            try:
                s = torch.load(path, weights_only=True)["step"]
                if s >= step:
                    return s
            except Exception:
                pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("timed out waiting for a checkpoint")


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["modules"]["net"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_kill_and_resume_match_uninterrupted(sig: signal.Signals, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    common = ["--set", "data.sleep=0.02", "--set", "trainer.ckpt_every=5", "--set", "trainer.ema.enabled=true",
              "--set", "model.dropout=0.1", "--output-dir", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "medgen_cli", "train", "toy", "--set", "trainer.max_steps=100000",
                             "--name", "killed", *common], cwd=REPO, env=subprocess_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = out / "toy" / "killed"
    _wait_for_step(run / "checkpoints" / "latest.pt", 10, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig in (signal.SIGINT, signal.SIGTERM):
        assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], err  # 128 + signal number
        assert f"stopped by {sig.name}" in err and f"--resume {run}" in err and "Traceback" not in err
    else:
        assert proc.returncode == -9
    stopped_at = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"]
    target = stopped_at + 7
    r = medgen(["train", "toy", "--resume", str(run), "--set", f"trainer.max_steps={target}"], subprocess_env)
    assert r.returncode == 0, r.stderr
    r = medgen(["train", "toy", "--set", f"trainer.max_steps={target}", "--name", "straight", "--set",
                "trainer.max_steps=" + str(target), *common], subprocess_env)
    assert r.returncode == 0, r.stderr
    a, b = _final_weights(run), _final_weights(out / "toy" / "straight")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_gloo_two_processes(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    env = dict(subprocess_env, MEDGEN_TOY_DUMP=str(tmp_path / "dump"))
    out = tmp_path / "runs"
    r = medgen(["train", "toy", "--nproc", "2", "--set", "trainer.max_steps=10", "--set", "trainer.log_every=1",
                "--set", "model.dropout=0.2", "--output-dir", str(out)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    w0 = torch.load(tmp_path / "dump" / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "dump" / "rank1.pt", weights_only=True)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    # One run directory, written once: one event file, each step logged once.
    assert [p.name for p in (out / "toy").iterdir()] == ["run-001"]
    run = out / "toy" / "run-001"
    assert len(list((run / "tb").iterdir())) == 1
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines() if "train/loss" in l]
    assert steps == list(range(1, 11))
    # The checkpoint holds the same weights the ranks ended with.
    assert all(torch.equal(w0[k], _final_weights(run)[k]) for k in w0)
    # 2 ranks x batch 4 per step: the dataset (64) is covered in 8 steps per epoch.
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["epoch"] == 1
