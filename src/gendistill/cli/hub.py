"""`gendistill push`: share a run's student, a student folder or an ONNX export as a Hugging Face Hub model repo
(weights or model.onnx, tokenizer, and a model card with the run's metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gendistill.artifacts.push import prepare_repo
from gendistill.artifacts.push import push as push_to_hub
from gendistill.cli.app import app, guard
from gendistill.errors import GendistillError


@app.command("push")
def push(
    source: Annotated[
        Path, typer.Argument(metavar="SOURCE", help="a run directory, a student folder or an ONNX export folder")
    ],
    repo_id: Annotated[str, typer.Argument(metavar="REPO_ID", help="Hub model repo, user/name (created if needed)")],
    private: Annotated[bool, typer.Option("--private", help="create the repo as private")] = False,
    branch: Annotated[
        str | None, typer.Option("--branch", metavar="BRANCH", help="push to this branch (default: main)")
    ] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", metavar="TEXT", help="commit message")] = None,
    local_dir: Annotated[
        Path | None,
        typer.Option(
            "--local-dir", metavar="DIR", help="write the repo's files (with the model card) to DIR; upload nothing"
        ),
    ] = None,
) -> None:
    """Push a student or an ONNX export to the Hugging Face Hub with a generated model card (README.md).

    Log in first (`hf auth login`) or set HF_TOKEN."""

    def action() -> None:
        if not source.exists():
            raise GendistillError(f"{source}: no such run directory, student folder or export folder")
        if local_dir is not None:
            if local_dir.exists() and (not local_dir.is_dir() or any(local_dir.iterdir())):
                raise GendistillError(f"--local-dir {local_dir}: exists and is not an empty folder; choose another")
            kind = prepare_repo(source, local_dir, repo_id)
            typer.echo(f"wrote {kind} repo for {repo_id} to {local_dir} (nothing uploaded)")
            return
        url = push_to_hub(source, repo_id, commit_message=message, private=private or None, branch=branch)
        typer.echo(f"pushed: {url}")

    guard(action)
