"""The `gendistill` Typer app, its global options and the one error guard every command runs under. Commands live in
their own modules (cli/run.py, cli/predict.py, cli/deploy.py) and register themselves on this app; nothing here
imports them, so there is no import circle."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gendistill.errors import GendistillError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Generation-distillation: a small labeled set in, a tiny fast classifier out.",
)
err = Console(stderr=True)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from gendistill import __version__

        typer.echo(f"gendistill {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    _state["debug"] = debug
    if not debug:  # transformers' load reports and weight-loading bars drown our own progress
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def guard(action: Callable[[], Any]) -> Any:
    """Run `action`; user errors become one line on stderr and exit 2, Ctrl-C exits 130 with how to resume."""
    try:
        return action()
    except GendistillError as error:
        if _state["debug"]:
            raise
        err.print(f"[bold red]error:[/bold red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as error:  # noqa: BLE001 - disk full surfaces as OSError or as a library's own error type
        if _state["debug"] or not _disk_full(error):
            raise
        err.print(f"[bold red]error:[/bold red] {_disk_full_message(error)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        err.print("interrupted: finished work is saved; rerun the same command to resume", highlight=False)
        raise typer.Exit(130) from None


def _disk_full(error: BaseException) -> bool:
    return (
        getattr(error, "errno", None) == errno.ENOSPC
        or "os error 28" in str(error)
        or ("No space left on device" in str(error))
    )


def _disk_full_message(error: BaseException) -> str:
    """Which file could not be written and how much room is left where it was going."""
    target = getattr(error, "filename", None)
    where = Path(target).parent if target else Path.cwd()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    about = f" while writing {target}" if target else ""
    return (
        f"the disk is full{about} ({free / 1e6:,.1f} MB free on the file system of {where}); free some space and "
        "rerun the same command: finished work is kept"
    )
