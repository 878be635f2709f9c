"""The options of ``medgen sample`` / ``interpolate`` / ``recon`` come from the families' options
models (medgen_cli/cli/family_flags.py): every field of every registered family is a flag, with
its description, and no command offers a flag no family takes."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from medgen_cli.cli.app import app
from medgen_cli.cli.family_flags import task_models
from medgen_cli.contract.registry import all_specs

#: Options of the commands themselves (not a family's): run, output, checkpoint, device ...
OWN = {"sample": {"run", "out", "checkpoint", "device", "overwrite", "nproc", "help"},
       "interpolate": {"run", "out", "checkpoint", "device", "overwrite", "steps", "help"},
       "recon": {"run", "input", "out", "views", "method", "geometry", "checkpoint", "iterations", "device",
                 "overwrite", "help"}}


def _params(command: str) -> dict[str, Any]:
    group = typer.main.get_command(app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    return {p.name: p for p in cmd.params}


def _fields(task: str, recon_command: str | None = None) -> set[str]:
    return {name for _, model in task_models(task, recon_command) for name in model.model_fields}


@pytest.mark.parametrize("command, recon_command, skipped", [
    ("sample", "medgen sample", set()),
    ("interpolate", None, set()),
    ("recon", None, {"input", "format", "threshold"}),
])
def test_every_family_field_is_a_flag_and_nothing_else(command: str, recon_command: str | None,
                                                       skipped: set[str]) -> None:
    params = _params(command)
    fields = _fields(command, recon_command) - skipped
    assert fields - set(params) == set()
    assert set(params) - fields - OWN[command] == set()
    for name in fields - OWN[command]:
        assert params[name].help, name  # --help explains every generated flag


def test_help_names_the_families_of_a_flag_and_their_defaults() -> None:
    params = _params("sample")
    assert params["truncation"].help.startswith("stylegan2: Truncation psi")
    assert "(default 1.0)" in params["truncation"].help
    assert params["steps"].help.startswith("diffusion: Sampling steps")
    assert not params["num"].help.startswith(tuple(all_specs()))  # every sampling family takes --num
    assert "png for sagan" in params["format"].help and "nifti for" in params["format"].help
    assert params["tile"].help.startswith("autoencoder:")  # sample --input on an autoencoder run
    assert "-n" in params["num"].opts
    assert params["resize"].secondary_opts == ["--no-resize"]


def test_steps_means_sampler_steps_and_interpolate_counts_frames() -> None:
    sample, interp = _params("sample"), _params("interpolate")
    assert "Sampling steps" in sample["steps"].help
    assert interp["frames"].opts == ["--frames", "-k"] and "Number of frames" in interp["frames"].help
    assert "Old name of --frames" in interp["steps"].help
    assert not any("steps" in m.model_fields for _, m in task_models("interpolate"))


def test_unset_flags_are_none_so_the_family_default_applies() -> None:
    for command in ("sample", "interpolate", "recon"):
        for name, param in _params(command).items():
            if name not in OWN[command]:
                assert param.default is None, (command, name)


def test_a_spec_names_the_options_its_family_class_uses() -> None:
    """The registry's options (read by the CLI without torch) and the family class (used by the
    engine) name the same models, for every registered family."""
    from medgen_cli.contract.capabilities import CAPABILITY_OF

    for name, spec in all_specs().items():
        cls, opts = spec.family_class(), spec.family_options()
        for attr, capability in CAPABILITY_OF.items():
            declared = getattr(cls, attr) if issubclass(cls, capability) else None
            assert declared is opts.for_task(attr.removesuffix("_options")), (name, attr)


def test_a_family_with_options_but_not_the_capability_is_refused() -> None:
    from medgen_cli.contract.family import Family
    from medgen_cli.contract.options import SampleOptions

    with pytest.raises(TypeError, match="does not inherit Sampling"):
        type("Broken", (Family,), {"sample_options": SampleOptions})
