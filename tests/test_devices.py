"""One device helper: a device a user cannot have is one line and exit 2 on every path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen_cli.cli.app import main
from medgen_cli.devices import check_device_spec, resolve_device
from medgen_cli.errors import MedgenError

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``medgen ARGS`` in this process: (exit code, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code or 0), capsys.readouterr().err


def assert_one_line_exit_2(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for needle in needles:
        assert needle in lines[0], err


@pytest.mark.parametrize("spec", ["auto", "cpu", "CPU", "cuda", "cuda:1", "mps"])
def test_spelling_accepted(spec: str) -> None:
    assert check_device_spec(spec) == spec.lower()


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cpu:0:1", "", "tpu"])
def test_spelling_refused(spec: str) -> None:
    with pytest.raises(MedgenError, match="unknown device"):
        resolve_device(spec)


def test_resolve_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@NO_CUDA
def test_cuda_without_cuda_names_the_setting() -> None:
    with pytest.raises(MedgenError, match=r"'cuda' \(trainer.device\).*not available") as exc:
        resolve_device("cuda", setting="trainer.device")
    assert exc.value.hint == "use --set trainer.device=cpu (or auto)"


def test_train_unknown_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["train", "toy", "--set", "trainer.device=gpu", "--output-dir", str(tmp_path)], capsys)
    assert_one_line_exit_2(code, err, "trainer.device", "gpu")
    assert not any(tmp_path.iterdir())  # refused before a run folder was made


@NO_CUDA
def test_train_cuda_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["train", "toy", "--set", "trainer.device=cuda", "--output-dir", str(tmp_path)], capsys)
    assert_one_line_exit_2(code, err, "CUDA is not available", "--set trainer.device=cpu")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["sample", "interpolate"])
def test_sample_unknown_device(toy_run: Path, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli([command, str(toy_run), "--device", "gpu", "--out", str(tmp_path / "s")], capsys)
    assert_one_line_exit_2(code, err, "unknown device 'gpu'", "--device")
    assert not (tmp_path / "s").exists()


@NO_CUDA
def test_sample_cuda_without_cuda(toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["sample", str(toy_run), "--device", "cuda", "--out", str(tmp_path / "s")], capsys)
    assert_one_line_exit_2(code, err, "CUDA is not available", "--device cpu")


def test_python_api_unknown_device(toy_run: Path) -> None:
    from medgen_cli.api import load_run

    with pytest.raises(MedgenError, match="unknown device 'gpu'"):
        load_run(toy_run, device="gpu")


def test_fid_extractor_unknown_device() -> None:
    from medgen_cli.metrics.fid import FeatureExtractor

    # The device is checked before the weights are looked for, so no weights file is needed.
    with pytest.raises(MedgenError, match="unknown device 'gpu'"):
        FeatureExtractor(device="gpu")


def test_eval_fid_unknown_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    for name in ("real", "fake"):
        np.savez(tmp_path / f"{name}.npz", mu=np.zeros(4), sigma=np.eye(4))
    (tmp_path / "imgs").mkdir()
    code, err = run_cli(["eval", "fid", str(tmp_path / "real.npz"), str(tmp_path / "imgs"), "--device", "gpu"], capsys)
    assert_one_line_exit_2(code, err, "gpu")
