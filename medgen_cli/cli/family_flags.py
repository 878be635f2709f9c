"""Typer options of ``medgen sample`` / ``interpolate`` / ``recon``, generated from the options
models every registered family declares (its ``options.py``, named by its registry entry), as
``medgen train <family>`` lists its keys from the config model.

A command takes the run's family only at run time, so its flags are the union of the families'
fields for the task; each flag's help says which families take it (when not all do) and their
defaults. Every flag defaults to "not given" (``None``): the family's own default applies, and
a flag the run's family does not take is refused with one line by
:func:`~medgen_cli.contract.options.parse_options`, never ignored.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
import typer
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from medgen_cli.contract.options import InferenceOptions
from medgen_cli.contract.registry import all_specs

F = TypeVar("F", bound=Callable[..., Any])

#: One-letter aliases of generated flags.
SHORT: dict[str, str] = {"num": "-n", "frames": "-k"}
#: Python types a flag keeps; anything else (tuples, literals) is read as text and parsed by the model.
PLAIN = (bool, int, float, str, Path)


def task_models(task: str, recon_command: str | None = None) -> list[tuple[str, type[InferenceOptions]]]:
    """``(family, options model)`` of every registered family that can do ``task``. With
    ``recon_command``, also the recon models whose ``command`` starts with it (``medgen sample
    RUN --input``: an autoencoder's reconstruction)."""
    found: list[tuple[str, type[InferenceOptions]]] = []
    for name, spec in all_specs().items():
        opts = spec.family_options()
        model = opts.for_task(task)
        if model is None and recon_command is not None and opts.recon is not None \
                and opts.recon.command.startswith(recon_command):
            model = opts.recon
        if model is not None:
            found.append((name, model))
    return found


def _cli_type(annotation: Any) -> type:
    """The type Typer parses a field's value as (``None`` stripped from unions)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if get_origin(annotation) is Literal:
        return str
    return annotation if annotation in PLAIN else str


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    """The ``(min, max)`` Typer can check itself (``ge``/``le``, ``gt`` for whole numbers)."""
    low = high = None
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            low = m.ge
        elif isinstance(m, annotated_types.Gt) and isinstance(m.gt, int):
            low = m.gt + 1
        elif isinstance(m, annotated_types.Le):
            high = m.le
    return low, high


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@dataclass
class Flag:
    """One generated option: the union of one field over the families that have it."""

    name: str
    kind: type
    description: str
    bounds: tuple[float | None, float | None]
    families: list[str] = field(default_factory=list)
    defaults: dict[str, str] = field(default_factory=dict)
    choices: list[str] = field(default_factory=list)

    def add(self, family: str, model: type[InferenceOptions], info: FieldInfo) -> None:
        self.families.append(family)
        self.description = self.description or info.description or ""
        if _bounds(info) != self.bounds:
            self.bounds = (None, None)  # families disagree: the models check it
        if info.default is not PydanticUndefined and info.default is not None:
            self.defaults[family] = _shown(info.default)
        values = list(model.formats) if self.name == "format" else \
            [str(a) for a in get_args(info.annotation) if get_origin(info.annotation) is Literal]
        self.choices += [v for v in values if v not in self.choices]

    def help(self, every: list[str]) -> str:
        """The description, the choices, who takes it (when not every family does) and the defaults."""
        text = self.description.rstrip(".")
        if self.choices and self.kind is str:
            text += f" ({' | '.join(self.choices)})"
        if not set(every) <= set(self.families):
            text = f"{', '.join(self.families)}: {text}"
        shown = sorted(set(self.defaults.values()), key=list(self.defaults.values()).index)
        if len(shown) == 1 and len(self.defaults) == len(self.families):
            text += f" (default {shown[0]})"
        elif shown:
            parts = [f"{v} for {', '.join(f for f, d in self.defaults.items() if d == v)}" for v in shown]
            text += f" (default: {'; '.join(parts)})"
        return (text + ".").replace("[", r"\[")

    def parameter(self, every: list[str]) -> inspect.Parameter:
        flag = "--" + self.name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if self.kind is bool else [flag, *([SHORT[self.name]] if self.name in SHORT else [])]
        low, high = self.bounds
        option = typer.Option(None, *decls, help=self.help(every), min=low, max=high)
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                 annotation=self.kind | None)


def collect_flags(models: list[tuple[str, type[InferenceOptions]]], skip: Collection[str]) -> list[Flag]:
    """One :class:`Flag` per field name over ``models``, in the order fields first appear."""
    flags: dict[str, Flag] = {}
    for family, model in models:
        for name, info in model.model_fields.items():
            if name in skip:
                continue
            if name not in flags:
                flags[name] = Flag(name, _cli_type(info.annotation), info.description or "", _bounds(info))
            elif flags[name].kind is not _cli_type(info.annotation):
                flags[name].kind = str
            flags[name].add(family, model, info)
    return list(flags.values())


def family_options(task: str, recon_command: str | None = None, skip: Collection[str] = ()) -> Callable[[F], F]:
    """Give a command, besides its own parameters, one option per field of the families' models
    for ``task`` (see :func:`task_models`; not in ``skip`` or among its own); the command receives
    the generated ones in its ``**options``. A help line names the families that take its flag
    unless every family that can do ``task`` does."""
    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in own} | set(skip)
        every = [family for family, _ in task_models(task)]
        models = task_models(task, recon_command)
        generated = [f.parameter(every) for f in collect_flags(models, taken)]
        func.__signature__ = sig.replace(parameters=[*own, *generated])  # type: ignore[attr-defined]
        return func
    return decorate


def given(flags: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave (``None`` = not given: the family's default applies)."""
    return {k: v for k, v in flags.items() if v is not None}
