"""The ``medgen`` application: command groups, ``--version``, ``--debug`` and error printing.

Heavy libraries (torch, monai, ...) are imported inside commands so ``medgen --help`` is instant.
"""

from __future__ import annotations

import os
import sys

import typer

from medgen_cli import __version__
from medgen_cli.errors import MedgenError

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


def _hide_flag_types() -> None:
    """No ``<bool>`` type column for flags (``--overwrite``, ``--fid/--no-fid``, ``--help``).

    Typer's rich help shows every option's value type since 0.2x, flags included, although a flag
    takes no value. Every option, the generated ``train <family>`` ones and ``--help`` included,
    is made by Typer's one option class, so the fix lives here, once.
    """
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_medgen_hides_flags", False):
        return  # an older Typer without the column, or already done

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._medgen_hides_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def _register_groups() -> None:
    # One line per command module; each attaches its commands to `app` or to a shared group.
    from medgen_cli.cli import train as _train  # noqa: F401
    from medgen_cli.cli import sample as _sample  # noqa: F401
    from medgen_cli.cli import data as _data, viz as _viz  # noqa: F401
    from medgen_cli.cli import demo as _demo  # noqa: F401
    from medgen_cli.cli import eval_fid as _eval_fid  # noqa: F401
    from medgen_cli.cli import cbct as _cbct  # noqa: F401
    from medgen_cli.cli import eval_shapes as _eval_shapes  # noqa: F401
    from medgen_cli.cli import eval_frd as _eval_frd  # noqa: F401
    from medgen_cli.cli.groups import attach_groups

    attach_groups(app)


def debug_enabled() -> bool:
    """Whether ``--debug`` (or ``MEDGEN_DEBUG=1``) is in effect."""
    return _STATE["debug"] or os.environ.get("MEDGEN_DEBUG", "") not in ("", "0")


def print_error(exc: BaseException) -> None:
    """One red line on stderr."""
    from rich.console import Console
    from rich.markup import escape

    # escaped: a message's own brackets (pip install 'medgen[frd]', a path) are text, not markup
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning :class:`MedgenError` into one line and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:  # torchrun ... -m medgen_cli -- ARGS: kept by some Pythons' argparse
        args = args[1:]
    if "--debug" in args[:1]:
        _STATE["debug"] = True
    try:
        # Standalone mode: Typer prints usage errors itself (exit 2) and raises SystemExit.
        app(args=args, prog_name="medgen")
    except MedgenError as exc:
        if debug_enabled():
            raise
        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print_error(MedgenError("interrupted"))
        sys.exit(130)


_hide_flag_types()
_register_groups()
