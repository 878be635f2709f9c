"""Runtime helpers: the stop flag remembers which signal asked (exit 130 for SIGINT, 143 for SIGTERM)."""

from __future__ import annotations

import os
import signal

import pytest

from medgen_cli.engine.runtime import StopFlag
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
