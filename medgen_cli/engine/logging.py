"""Where training metrics go: rich progress, TensorBoard, metrics.jsonl and log.txt (rank 0)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Column
from rich.text import Text


def _fmt(value: float) -> str:
    """4 significant digits: short enough for three metrics on an 80-column line."""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


class _MetricsColumn(ProgressColumn):
    """The metrics: the one column that gives way when the line is too long (cut with "…"), so
    the step counter and the ETA always show whole. Rich shrinks only columns that may wrap; the
    text itself never wraps, so the progress stays one line."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=False, min_width=0))

    def render(self, task: Task) -> Text:
        return Text(task.fields.get("losses", ""), no_wrap=True, overflow="ellipsis")


def _fixed(text: str) -> TextColumn:
    return TextColumn(text, table_column=Column(no_wrap=True))


class RunLogger:
    """Fan-out of metrics to the console, TensorBoard and files. Inactive on non-zero ranks."""

    def __init__(self, root: Path | None, active: bool, total_steps: int, start_step: int,
                 console: Console | None = None, tensorboard: bool = True) -> None:
        self.active = active
        self.root = root
        self.console = console or Console(stderr=True)
        self.writer: Any = None
        self._metrics_fh = None
        self._log_fh = None
        self._progress: Progress | None = None
        self._task: Any = None
        self._last: dict[str, float] = {}
        if not active:
            return
        if root is not None:
            _truncate_metrics(root / "metrics.jsonl", start_step)
            self._metrics_fh = open(root / "metrics.jsonl", "a", buffering=1)
            self._log_fh = open(root / "log.txt", "a", buffering=1)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(root / "tb"), purge_step=start_step + 1 if start_step else None)
        # Order: what must stay visible first; at 80 columns only the metrics are shortened.
        self._progress = Progress(
            _fixed("[bold]{task.description}"), MofNCompleteColumn(table_column=Column(no_wrap=True)),
            BarColumn(bar_width=10, table_column=Column(no_wrap=True)), _fixed("{task.fields[speed]}"),
            TimeElapsedColumn(table_column=Column(no_wrap=True)), _fixed("eta"),
            TimeRemainingColumn(table_column=Column(no_wrap=True)), _MetricsColumn(),
            console=self.console, transient=False,
        )
        self._task = self._progress.add_task("train", total=total_steps, completed=start_step, losses="", speed="")
        self._t0 = time.perf_counter()
        self._s0 = start_step

    def __enter__(self) -> RunLogger:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def info(self, message: str, console: bool = True) -> None:
        """A line in log.txt and (``console``) on the console."""
        if not self.active:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if self._log_fh is not None:
            self._log_fh.write(f"{stamp} {message}\n")
        if console:
            (self._progress.console if self._progress is not None else self.console).print(
                message, highlight=False, markup=False)

    def warning(self, message: str) -> None:
        """A yellow ``warning:`` line on the console and in log.txt."""
        self.info(f"warning: {message}", console=False)
        if self.active:
            from rich.text import Text

            (self._progress.console if self._progress is not None else self.console).print(
                Text(f"warning: {message}", style="yellow"), highlight=False)

    def progress(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        """Advance the bar (cheap; called every step)."""
        if self._progress is None:
            return
        self._last.update(metrics)
        elapsed = time.perf_counter() - self._t0
        rate = (step - self._s0) / elapsed if elapsed > 0 else 0.0
        shown = " ".join(f"{k.split('/')[-1]}={_fmt(v)}" for k, v in list(metrics.items())[:3])
        self._progress.update(self._task, completed=step, description=f"ep {epoch}",
                              losses=shown, speed=f"{rate:.3g} it/s")

    def scalars(self, step: int, epoch: int, metrics: dict[str, float], prefix: str = "") -> None:
        """Write metrics to TensorBoard and one JSON line to metrics.jsonl."""
        if not self.active or not metrics:
            return
        named = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
        if self.writer is not None:
            for k, v in named.items():
                self.writer.add_scalar(k, v, step)
        if self._metrics_fh is not None:
            record = {"step": step, "epoch": epoch, "time": round(time.time(), 3), **named}
            self._metrics_fh.write(json.dumps(record, allow_nan=True) + "\n")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
        for fh in (self._metrics_fh, self._log_fh):
            if fh is not None:
                fh.close()
        self._metrics_fh = self._log_fh = None


def _truncate_metrics(path: Path, start_step: int) -> None:
    """On resume, drop records written after the checkpoint (a killed run may have logged steps
    that the resumed run will redo), so metrics.jsonl holds each step once."""
    if not path.is_file():
        return
    from medgen_cli.io import atomic_path

    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= start_step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in kept))
