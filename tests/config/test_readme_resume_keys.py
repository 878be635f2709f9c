"""The README's list of keys that may change on resume is the engine's (issue 29, item 14:
`trainer.channels_last` was missing)."""

from __future__ import annotations

import re
from pathlib import Path

from medgen_cli.config.loading import RESUME_MUTABLE_KEYS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_resumable_key_is_listed_in_the_readme() -> None:
    text = " ".join(README.read_text().split())
    start = text.index("Only these keys may change on resume:")
    listed = set(re.findall(r"`([\w.]+)`", text[start:text.index("anything else is an error", start)]))
    for key in RESUME_MUTABLE_KEYS:
        # The README names trainer keys once with the prefix (`trainer.max_steps`, then `max_epochs`, ...).
        assert key in listed or key.removeprefix("trainer.") in listed, key
