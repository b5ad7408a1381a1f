"""The one progress bar every long command shows: count, a status field, elapsed time and ETA.

rich draws a bar only on a terminal. Where stdout is a file or a pipe (``nohup``, ``| tee``,
SLURM, CI) the same bar prints a plain line instead, at the start and then every
``CACL_PROGRESS_SECONDS`` (default 30) seconds, so a log shows a long run moving.
"""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

DEFAULT_LOG_SECONDS = 30.0


def log_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("CACL_PROGRESS_SECONDS", DEFAULT_LOG_SECONDS)))
    except ValueError:
        return DEFAULT_LOG_SECONDS


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LoggedProgress(Progress):
    """A rich Progress that also prints plain progress lines when the console is no terminal."""

    def __init__(self, *columns, label: str, console: Console) -> None:
        # No live bar off a terminal: rich would print its last frame at the end, a bar line in
        # a log; the plain lines below say the same.
        super().__init__(*columns, console=console, disable=not console.is_terminal)
        self.label, self.interval, self.last_line = label, log_interval(), -float("inf")

    def update(self, task_id: TaskID, **fields) -> None:
        super().update(task_id, **fields)
        if not self.console.is_terminal and not self.console.quiet:
            self._log_line(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _log_line(self, task_id: TaskID) -> None:
        now = time.monotonic()
        task = self._tasks[task_id]
        if now - self.last_line < self.interval and not task.finished:
            return
        self.last_line = now
        total = f"{task.total:g}" if task.total is not None else "?"
        rate = f"{task.speed:.2f}/s" if task.speed else "-/s"
        status = task.fields.get("status", "")
        line = f"{self.label} {task.completed:g}/{total} {status} {rate} "
        line += f"elapsed {_clock(task.elapsed)} eta {_clock(task.time_remaining)}"
        self.console.print(Text(" ".join(line.split())))


def progress_bar(console: Console, label: str) -> LoggedProgress:
    """A bar labelled ``label``; tasks carry a ``status`` field (loss, clips/s ...)."""
    return LoggedProgress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        label=label,
        console=console,
    )
