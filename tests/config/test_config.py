"""Strict configs: defaults files, overrides, unknown keys, wrong types, resume whitelist."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medgen_cli.config.loading import apply_overrides, check_resume_changes, dump_config, load_yaml
from medgen_cli.config.build import build_config
from medgen_cli.errors import MedgenError
from medgen_cli.families import BUILTIN
from medgen_cli.contract.registry import FamilySpec, all_specs

REPO = Path(__file__).resolve().parents[2]


def test_overrides_are_parsed_with_safe_load() -> None:
    out = apply_overrides({"a": {"b": 1}}, ["a.b=2", "a.c=[1, 2]", "d=true", "e=hello", "f=1e-4", "g=null"])
    assert out == {"a": {"b": 2, "c": [1, 2]}, "d": True, "e": "hello", "f": 1e-4, "g": None}


def test_override_without_equals_is_an_error() -> None:
    with pytest.raises(MedgenError, match="KEY=VALUE"):
        apply_overrides({}, ["trainer.max_steps"])


def test_unknown_key_suggests_the_close_match() -> None:
    with pytest.raises(MedgenError) as exc:
        build_config("toy", overrides=["trainer.max_step=10"])
    assert "unknown config key 'trainer.max_step'" in str(exc.value)
    assert "trainer.max_steps" in str(exc.value)


def test_unknown_top_level_key_suggests() -> None:
    with pytest.raises(MedgenError, match="did you mean 'trainer'"):
        build_config("toy", overrides=["trainr.max_steps=10"])


def test_wrong_type_names_the_key_path() -> None:
    with pytest.raises(MedgenError) as exc:
        build_config("toy", overrides=["trainer.max_steps=abc"])
    assert "trainer.max_steps" in str(exc.value) and "integer" in str(exc.value)


def test_config_file_for_another_family_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("family: nosuch\n")
    with pytest.raises(MedgenError, match="unknown family"):
        build_config("toy", config_file=f)


def test_invalid_yaml_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("trainer: [unclosed\n")
    with pytest.raises(MedgenError, match="not valid YAML"):
        load_yaml(f)


def test_resume_whitelist() -> None:
    saved = build_config("toy").model_dump(mode="json")
    ok = build_config("toy", overrides=["trainer.max_steps=5000", "trainer.batch_size=8"]).model_dump(mode="json")
    assert check_resume_changes(saved, ok) == ["trainer.batch_size", "trainer.max_steps"]
    bad = build_config("toy", overrides=["model.hidden=99"]).model_dump(mode="json")
    with pytest.raises(MedgenError, match="cannot change 'model.hidden' on resume"):
        check_resume_changes(saved, bad)
    # Learning rates may change (issue 29: a diverged run resumes with a lower one).
    lower = build_config("toy", overrides=["model.lr=0.001"]).model_dump(mode="json")
    assert check_resume_changes(saved, lower) == ["model.lr"]


def _builtin_spec(module: str) -> FamilySpec:
    return next(s for s in all_specs().values() if s.family.startswith(f"medgen_cli.families.{module}."))


#: configs/*.yaml that are not a family's defaults, and the test that checks each of them.
NOT_FAMILY_DEFAULTS = {"cbct_geometry.yaml": "tests/data/test_geometry.py"}


def test_every_default_yaml_equals_its_model_defaults() -> None:
    """The one drift test: each configs/<family>.yaml is exactly what the config model dumps (so
    it documents the real defaults), and every built-in family has one."""
    expected = {f"{module}.yaml": _builtin_spec(module) for module in BUILTIN}
    present = {p.name for p in (REPO / "configs").glob("*.yaml")}
    assert sorted(set(expected) - present) == [], "a built-in family has no default YAML"
    assert sorted(present - set(expected) - set(NOT_FAMILY_DEFAULTS)) == [], "a YAML in configs/ belongs to no family"
    drifted = [name for name, spec in expected.items()
               if (REPO / "configs" / name).read_text() != dump_config(spec.config_class()())]
    assert not drifted, (f"{drifted} drifted from the model defaults; regenerate each with "
                         "`medgen train <family> --dry-run > configs/<family>.yaml`")


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_tiny_preset_validates(name: str) -> None:
    spec = _builtin_spec(name)
    path = REPO / "configs" / "tiny" / f"{name}.yaml"
    assert path.is_file(), f"configs/tiny/{name}.yaml is missing"
    build_config(spec.name, config_file=path)


def test_unquoted_off_means_amp_off() -> None:
    """YAML 1.1 reads `off` as false; `--set trainer.amp=off` must still mean "off", while a
    true (`on`) is no precision and stays an error."""
    assert build_config("toy", overrides=["trainer.amp=off"]).trainer.amp == "off"
    with pytest.raises(MedgenError, match="trainer.amp"):
        build_config("toy", overrides=["trainer.amp=on"])
