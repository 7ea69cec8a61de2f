"""The `gendistill` Typer app, its global options and the one error guard every command runs under. Commands live in
their own modules (cli/run.py, cli/predict.py, cli/deploy.py) and register themselves on this app; nothing here
imports them, so there is no import circle."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer import core

from gendistill import __version__, progress
from gendistill.errors import GendistillError
from gendistill.io import redact


def _readable_help_types() -> None:
    """Recent typer prints each parameter's Python type beside it in --help (`TEXTS... <list[str]>`, `--json <bool>`),
    and for arguments even when they have a metavar. Show an argument's metavar alone and nothing for on/off flags;
    options with values carry their own metavars (`--set KEY=VALUE`)."""
    argument, option = getattr(core, "TyperArgument", None), getattr(core, "TyperOption", None)
    if argument is None or option is None or not hasattr(argument, "display_type_rich"):
        return  # an older typer: it shows no such types
    argument_type, option_type = argument.display_type_rich, option.display_type_rich

    def argument_display(self: Any, ctx: Any) -> str | None:
        return "" if self.metavar is not None else argument_type(self, ctx)

    def option_display(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) and self.metavar is None else option_type(self, ctx)

    argument.display_type_rich, option.display_type_rich = argument_display, option_display


_readable_help_types()

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Generation-distillation: a small labeled set in, a tiny fast classifier out.",
)
err = Console(stderr=True)
_state: dict[str, Any] = {"debug": False, "output": None}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gendistill {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="only warnings and errors: no progress lines or bars")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="also debug messages (and a line per epoch beside the bars)")
    ] = False,
) -> None:
    _state["debug"] = debug
    if quiet and verbose:
        raise typer.BadParameter("--quiet and --verbose contradict each other; pass one of them")
    progress.set_verbosity(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    if not debug:  # transformers' load reports and weight-loading bars drown our own progress
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def guard(action: Callable[[], Any]) -> Any:
    """Run `action`; user errors become one line on stderr and exit 2, Ctrl-C exits 130 with how to resume."""
    _state["output"] = None
    try:
        return action()
    except GendistillError as error:
        if _state["debug"]:
            raise
        # escaped: a message may quote brackets (`pip install 'gendistill[tracking]'`, `[text]`) that are not markup
        err.print(f"[bold red]error:[/bold red] {escape(redact(str(error)))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as error:  # noqa: BLE001 - disk full surfaces as OSError or as a library's own error type
        if _state["debug"] or not _disk_full(error):
            raise
        err.print(f"[bold red]error:[/bold red] {redact(_disk_full_message(error))}", highlight=False, soft_wrap=True)
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


def writing_into(folder: Path, what: str) -> None:
    """Name the folder the running command writes into (`what`: "the run directory", "the export folder"). A full
    disk whose error carries no file name (a library writing for us) is then reported for that folder's file
    system: the working directory, the only other guess, may well be on another one."""
    _state["output"] = (Path(folder), what)


def _disk_full_message(error: BaseException) -> str:
    """Which file (or else which output folder) could not be written and how much room is left where it was
    going."""
    target = getattr(error, "filename", None)
    output = _state["output"]
    if target:
        where, about = Path(target).parent, f" while writing {target}"
    elif output is not None:
        where, about = output[0], f" while writing into {output[1]} {output[0]}"
    else:
        where, about = Path.cwd(), ""
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    return (
        f"the disk is full{about} ({free / 1e6:,.1f} MB free on the file system of {where}, mounted at "
        f"{_mount_point(where)}); free some space and rerun the same command: finished work is kept"
    )


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path
