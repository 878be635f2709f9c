"""The root ``medgen`` application object, ``--version`` and ``--debug``.

Command modules attach their commands to :data:`app` here; :mod:`medgen_cli.cli.app` imports
them (and only it does), so no command module imports the module that imports it.
"""

from __future__ import annotations

import os

import typer

from medgen_cli import __version__

app = typer.Typer(
    name="medgen",
    help="Convert data, train generative and reconstruction models, sample, interpolate, "
    "evaluate and look at the results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_STATE = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    """medgen: generative and reconstruction models for medical and scientific imaging."""
    _STATE["debug"] = debug or os.environ.get("MEDGEN_DEBUG", "") not in ("", "0")


def debug_enabled() -> bool:
    """Whether ``--debug`` (or ``MEDGEN_DEBUG=1``) is in effect."""
    return _STATE["debug"] or os.environ.get("MEDGEN_DEBUG", "") not in ("", "0")


def set_debug() -> None:
    """Turn on ``--debug`` before Typer parses the arguments (``main`` sees it first)."""
    _STATE["debug"] = True
