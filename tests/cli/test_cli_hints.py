"""Smaller things a user notices (issue 12): help defaults per family, hints that name real flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from medgen_cli.cli.train import config_help_lines
from medgen_cli.errors import MedgenError
from medgen_cli.contract.registry import get_spec

REPO = Path(__file__).resolve().parents[2]


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("family", ["autoencoder", "diffusion"])
def test_train_help_shows_the_family_defaults(family: str) -> None:
    # The reference is the shipped default YAML (generated from the same models, checked by the drift test).
    shipped = _flatten(yaml.safe_load((REPO / "configs" / f"{family}.yaml").read_text()))
    shown = {line.split(" = ", 1)[0]: line.split(" = ", 1)[1].split("  ", 1)[0] for line in config_help_lines(get_spec(family))}
    assert shown["trainer.batch_size"] == repr(shipped["trainer.batch_size"]) == "2"
    assert shown["trainer.ema.enabled"] == repr(shipped["trainer.ema.enabled"]) == "True"
    for key in ("trainer.max_steps", "trainer.val_every", "trainer.ckpt_every"):
        assert shown[key] == repr(shipped[key]), key


def test_require_fid_hint_names_what_train_accepts(tmp_path: Path) -> None:
    from medgen_cli.families.gan2d.config import FIDConfig
    from medgen_cli.families.gan2d.fid_tracking import FIDState

    state = FIDState(FIDConfig(weights=str(tmp_path / "missing.pth")), require=True)
    with pytest.raises(MedgenError) as info:
        state.build(lambda: torch.zeros(4, 3, 16, 16), torch.device("cpu"))
    hint = info.value.hint or ""
    assert "--require-fid" in info.value.message
    assert "fid.weights" in hint and "--weights" not in hint
