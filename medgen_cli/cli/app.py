"""The ``medgen`` application: every command module registered, error printing, the entry point.

The application object lives in :mod:`medgen_cli.cli.root`; command modules attach to it and this
module imports them (one line each), so the two never import each other. Importing
:mod:`medgen_cli.families` registers every built-in family (``medgen train <family>``).
Heavy libraries (torch, monai, ...) are imported inside commands so ``medgen --help`` is instant.
"""

from __future__ import annotations

import sys

import medgen_cli.families  # noqa: F401  (registers the built-in families)
from medgen_cli.cli.root import app, debug_enabled, set_debug
from medgen_cli.errors import MedgenError

__all__ = ["app", "debug_enabled", "main", "print_error"]


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
        set_debug()
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
