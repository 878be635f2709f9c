"""Runtime helpers: the stop flag remembers which signal asked (exit 130 for SIGINT, 143 for SIGTERM);
``trainer.amp`` resolves to the precision the device and the family support."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from medgen_cli.engine import runtime
from medgen_cli.engine.runtime import StopFlag, amp_notes, resolve_amp
from medgen_cli.engine.trainer import TrainingInterrupted


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_flag_records_the_signal(sig: signal.Signals, code: int) -> None:
    before = signal.getsignal(sig)
    with StopFlag() as stop:
        os.kill(os.getpid(), sig)
        assert stop.requested and stop.signum == sig
    assert signal.getsignal(sig) is before  # handlers restored
    assert TrainingInterrupted(3, None, stop.signum).exit_code == code


def test_second_sigterm_stops_at_once_with_143() -> None:
    with StopFlag():
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(SystemExit) as exc:
            os.kill(os.getpid(), signal.SIGTERM)
    assert exc.value.code == 143


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_on_cpu_is_bf16_only_for_measured_families_on_native_bf16(monkeypatch: pytest.MonkeyPatch,
                                                                         native: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cpu = torch.device("cpu")
    assert runtime.cpu_has_native_bf16() is native
    assert resolve_amp("auto", cpu, cpu_bf16=True) == (torch.bfloat16 if native else None)
    assert resolve_amp("auto", cpu, cpu_bf16=False) is None  # a family not measured in bf16 stays fp32
    assert resolve_amp("off", cpu, cpu_bf16=True) is None
    assert resolve_amp("bf16", cpu) == torch.bfloat16  # asked for explicitly: given, with a note where emulated
    assert bool(amp_notes(torch.bfloat16, cpu)) is not native
    assert amp_notes(None, cpu) == []


def test_amp_fp16_on_cpu_is_one_clear_error() -> None:
    from medgen_cli.errors import MedgenError

    with pytest.raises(MedgenError, match="CUDA"):
        resolve_amp("fp16", torch.device("cpu"))
