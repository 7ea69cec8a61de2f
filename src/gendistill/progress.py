"""Progress bars for long stages (rich), silent when not attached to a terminal or when disabled."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def enabled() -> bool:
    if os.environ.get("RANK", "0") != "0":
        return False
    return os.environ.get("GENDISTILL_PROGRESS", "auto") != "0" and (
        sys.stderr.isatty() or os.environ.get("GENDISTILL_PROGRESS") == "1"
    )


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None):
        self._progress, self._task = progress, task

    def advance(self, amount: float = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)

    def update(self, **fields: object) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, **fields)


@contextmanager
def bar(description: str, total: float | None, completed: float = 0) -> Iterator[_Bar]:
    if not enabled():
        yield _Bar(None, None)
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        yield _Bar(progress, progress.add_task(description, total=total, completed=completed))


def _secondary_process() -> bool:
    """Under `accelerate launch`, only the main process (RANK 0) prints: N copies of each line help nobody."""
    return os.environ.get("RANK", "0") != "0"


def log(message: str) -> None:
    if not _secondary_process():
        console.print(message, highlight=False)


def step(message: str) -> None:
    """A line per finished shard or epoch when no progress bar is shown (a log file, CI): long stages are never
    silent. GENDISTILL_PROGRESS=0 turns it off along with the bars."""
    if not enabled() and os.environ.get("GENDISTILL_PROGRESS", "auto") != "0" and not _secondary_process():
        console.print(message, highlight=False)
