"""The one user-facing error type.

Anything a user can cause (a bad file, a typo in a config key, missing weights, an incompatible
resume) raises :class:`MedgenError`. The CLI prints it as a single red line with the fix and exits
with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations


_WORKER_MARK = "in DataLoader worker process"


class MedgenError(Exception):
    """A problem the user can fix.

    Args:
        message: What is wrong, in one sentence.
        hint: How to fix it, in one sentence (optional).
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        if _WORKER_MARK in message and "Original Traceback" in message:
            # torch re-raises a DataLoader worker's exception as MedgenError(<its traceback text>):
            # keep the one line the worker raised, so the user still sees one line.
            last = [line for line in message.splitlines() if line.strip()][-1].strip()
            message = last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith("MedgenError") else last
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message
