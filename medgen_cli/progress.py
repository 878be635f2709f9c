"""Progress bars of the commands: rich, on stderr, transient, and off when stderr is not a terminal.

stdout is for results (tables, ``--json``): a rich live display on stdout, or one on a
non-terminal stream, leaves a blank line each time it stops (one per interpolation frame, one
before the JSON, one before an error line). Every progress bar therefore goes through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

#: ``factory(description, total)`` → ``advance(n)``: how libraries report progress without rich.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


def stderr_console() -> Console:
    """The console for notes, warnings and progress (stdout stays for results)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _columns() -> tuple[Any, ...]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn())


def track(it: Iterable[Any], total: int, description: str) -> Iterator[Any]:
    """``it`` with a transient rich progress bar on stderr (none when stderr is not a terminal)."""
    from rich.progress import Progress

    console = stderr_console()
    progress = Progress(*_columns(), console=console, transient=True, disable=not console.is_terminal)
    with progress:
        yield from progress.track(it, total=total, description=description)


class Bars:
    """A context with transient rich bars on stderr; :meth:`factory` is a :data:`ProgressFactory`.

    Args:
        enabled: ``False`` hides the bars (they are hidden anyway when stderr is not a terminal).
    """

    def __init__(self, enabled: bool = True) -> None:
        from rich.progress import Progress

        console = stderr_console()
        self.progress: Progress = Progress(*_columns(), console=console, transient=True,
                                           disable=not (enabled and console.is_terminal))

    def __enter__(self) -> "Bars":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def factory(self, description: str, total: int) -> Callable[[int], None]:
        """A new bar of ``total`` steps; the returned callback advances it by ``n``."""
        task = self.progress.add_task(description, total=total)
        return lambda n: self.progress.advance(task, n)
