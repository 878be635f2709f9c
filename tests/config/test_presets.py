"""The CPU and GPU presets (configs/cpu, configs/gpu) validate strictly and keep their promises."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted((REPO / "configs").glob("[cg]pu/*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_preset_validates(path: Path) -> None:
    from medgen_cli.config.build import build_config

    cfg = build_config(path.stem, path)
    assert cfg.trainer.device == ("cpu" if path.parent.name == "cpu" else "cuda")
    if path.stem == "diffusion":
        assert cfg.noise.objective == "rflow" and cfg.sample.steps == 30


def test_every_family_with_a_cpu_preset_has_a_gpu_one() -> None:
    names = {p.parent.name: set() for p in PRESETS}
    for p in PRESETS:
        names[p.parent.name].add(p.name)
    assert names["cpu"] and names["cpu"] <= names.get("gpu", set()) | {"sagan.yaml", "stylegan2.yaml"}
