"""What gendistill tells the user while it works: progress bars (rich) and messages through Python `logging`.

Messages go to the `gendistill` logger, so an application can route, filter or silence them like any other library's
(`logging.getLogger("gendistill").setLevel(logging.WARNING)`). Until someone configures that logger, a handler of
ours prints its records to stderr with rich markup, at INFO: what the CLI shows by default. `set_verbosity` is what
`--quiet` (warnings and errors only, no bars) and `--verbose` (also DEBUG) set.

Bars show only on a terminal. Without one (a log file, CI), `step` prints a line per finished shard or epoch instead,
so a long stage is never silent; GENDISTILL_PROGRESS=0 turns off both, GENDISTILL_PROGRESS=1 forces the bars.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from gendistill.io import redact

console = Console(stderr=True)
logger = logging.getLogger("gendistill")


class _ConsoleHandler(logging.Handler):
    """Prints records on the shared rich console (so lines and bars do not tear each other), markup rendered."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            markup = getattr(record, "markup", None)
            if markup is not None:
                console.print(markup, highlight=False, soft_wrap=True)
            else:
                console.print(Text(self.format(record)), highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


_handler = _ConsoleHandler()
if not logger.handlers:  # an application that configured the logger first keeps its own handlers
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def set_verbosity(level: int) -> None:
    """logging.WARNING (--quiet), logging.INFO (default) or logging.DEBUG (--verbose)."""
    logger.setLevel(level)


def quiet() -> bool:
    return not logger.isEnabledFor(logging.INFO)


def enabled() -> bool:
    """Whether progress bars are shown: on a terminal (or forced with GENDISTILL_PROGRESS=1), unless quiet, and
    only in the main process under `accelerate launch`."""
    setting = os.environ.get("GENDISTILL_PROGRESS", "auto")
    if _secondary_process():
        return False
    return setting != "0" and not quiet() and (sys.stderr.isatty() or setting == "1")


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


def _emit(level: int, message: str) -> None:
    """Log `message` (rich markup allowed): other handlers get the plain text, ours prints the markup."""
    if not logger.isEnabledFor(level) or _secondary_process():
        return
    message = redact(message)
    try:
        plain = Text.from_markup(message).plain
    except MarkupError:  # a message quoting user text with brackets: show it as it is
        plain, message = message, escape(message)
    logger.log(level, plain, extra={"markup": message})


def log(message: str) -> None:
    """A message the user sees by default (INFO)."""
    _emit(logging.INFO, message)


def warning(message: str) -> None:
    """A warning: shown even with --quiet."""
    _emit(logging.WARNING, f"[yellow]warning[/yellow]: {escape(message)}")


def debug(message: str) -> None:
    """Detail shown with --verbose only."""
    _emit(logging.DEBUG, message)


def step(message: str) -> None:
    """A line per finished shard or epoch: at INFO when no progress bar is shown (a log file, CI), so long stages
    are never silent; at DEBUG (--verbose) beside a bar. GENDISTILL_PROGRESS=0 turns it off along with the bars."""
    if os.environ.get("GENDISTILL_PROGRESS", "auto") == "0":
        return
    _emit(logging.DEBUG if enabled() else logging.INFO, message)


@contextmanager
def muted() -> Iterator[None]:
    """Per-epoch lines and bars off for inner loops whose epochs nobody reads one by one (cross-validation
    folds: hundreds of one-step epochs); warnings still show."""
    previous = os.environ.get("GENDISTILL_PROGRESS")
    os.environ["GENDISTILL_PROGRESS"] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GENDISTILL_PROGRESS", None)
        else:
            os.environ["GENDISTILL_PROGRESS"] = previous
