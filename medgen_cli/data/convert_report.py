"""Progress bar and summary table of ``medgen data convert-h5`` (rich)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medgen_cli.data.convert_options import ConvertSummary


class _NoBar:
    def __bool__(self) -> bool:
        return False

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(show: bool, total: int) -> Any:
    """A transient rich progress bar on stderr, or a falsy no-op context when not shown."""
    if not show or total == 0:
        return _NoBar()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)


def summary_table(summary: ConvertSummary) -> Any:
    """A rich table: one row per input; the caption breaks down skips and drops, and the throughput."""
    from rich.table import Table

    table = Table(title=f"convert-h5 → {summary.out}", title_justify="left")
    for c in ("input", "layout", "clouds", "train", "val", "resumed", "skipped", "dropped pts"):
        table.add_column(c, justify="left" if c in ("input", "layout") else "right")
    for s in summary.sources:
        table.add_row(os.path.basename(s.source), s.layout, str(s.clouds), str(s.train), str(s.val), str(s.resumed),
                      str(s.empty + s.degenerate + s.outside_all), str(s.nonfinite_points + s.outside_points))
    src = summary.sources
    secs = max(summary.seconds, 1e-9)
    table.caption = (
        f"skipped clouds: {sum(s.empty for s in src)} empty, {sum(s.degenerate for s in src)} degenerate "
        f"(all points identical), {sum(s.outside_all for s in src)} with no point inside the grid; "
        f"dropped points: {sum(s.nonfinite_points for s in src)} NaN/Inf, {sum(s.outside_points for s in src)} "
        f"outside the grid. {summary.written} volume(s) written in {summary.seconds:.1f} s "
        f"({summary.written / secs:.1f} volumes/s, {summary.points / secs:,.0f} points/s); "
        f"manifest.json: {summary.records} record(s)")
    table.caption_justify = "left"
    return table
