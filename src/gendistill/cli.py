"""The `gendistill` command: a thin layer over the Python API (gendistill.pipeline, gendistill.students)."""

from __future__ import annotations

import json
import sys
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
    help="Generation-distillation: a small labeled set in, a tiny fast classifier out.",
)
err = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False) -> None:
    _state["debug"] = debug
    if not debug:  # transformers' load reports and weight-loading bars drown our own progress
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def _guard(action: Callable[[], Any]) -> Any:
    """Run `action`; user errors become one line on stderr and exit 2, Ctrl-C exits 130 with how to resume."""
    try:
        return action()
    except GendistillError as error:
        if _state["debug"]:
            raise
        err.print(f"[bold red]error:[/bold red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        err.print("interrupted: finished work is saved; rerun the same command to resume", highlight=False)
        raise typer.Exit(130) from None


def _device_override(device: str | None) -> list[str]:
    return [f"device={device}"] if device else []


DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda (default: the config's)")]


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config")],
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="default: runs/<name>")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="run name under runs/ (default: the config's file name)")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override: section.key=value (repeatable)")] = None,
    force: Annotated[
        list[str] | None,
        typer.Option(
            "--force",
            help="rerun STAGE and everything after it (repeatable); 'all' reruns everything; 'changed' "
            "accepts a changed config and reruns only what it affects",
        ),
    ] = None,
    device: DeviceOpt = None,
) -> None:
    """Run every stage: data, teacher, generator, generate, label, distill, evaluate."""
    from gendistill.config import load_config
    from gendistill.pipeline import FORCE_CHOICES, Run, run_dir_for

    def action() -> None:
        for value in force or []:
            if value not in FORCE_CHOICES:
                raise GendistillError(f"--force {value!r}: expected one of {', '.join(FORCE_CHOICES)}")
        cfg = load_config(config, [*(set_ or []), *_device_override(device)])
        target = run_dir or run_dir_for(name or config.stem)
        report = Run(cfg, target).run(force=force)
        if report is not None:
            _print_summary(report.data)
            typer.echo(f"report: {report.path} (and {report.markdown_path})")

    _guard(action)


def _stage_command(stage: str, name: str, help_text: str) -> None:
    def command(
        run_dir: Annotated[Path, typer.Argument(help="an existing run directory")], device: DeviceOpt = None
    ) -> None:
        from gendistill.config import load_config
        from gendistill.errors import RunDirError
        from gendistill.pipeline import Run

        def action() -> None:
            if not (run_dir / "config.yaml").exists():
                raise RunDirError(
                    f"{run_dir}: not a run directory (no config.yaml); start one with gendistill run CONFIG"
                )
            cfg = load_config(run_dir / "config.yaml", _device_override(device))
            Run(cfg, run_dir).run(only=stage, force=[stage])
            typer.echo(f"{stage}: done in {run_dir}")

        _guard(action)

    command.__doc__ = help_text
    app.command(name)(command)


_stage_command("teacher", "train-teacher", "Fine-tune the teacher on the labeled data.")
_stage_command("generator", "train-generator", "Fine-tune the generator LM on the training texts.")
_stage_command("generate", "generate", "Build the transfer set (sample the generator; read file sources).")
_stage_command("label", "label", "Label the training and transfer texts with the teacher's logits.")
_stage_command("distill", "distill", "Train the student (and the baseline student).")
_stage_command("evaluate", "evaluate", "Evaluate teacher and students; write report.json and report.md.")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="a run directory, a student folder or an export folder")],
    texts: Annotated[list[str] | None, typer.Argument(help="texts to classify")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="one text per line")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines with probabilities")] = False,
) -> None:
    """Print the student's label for each text."""
    from gendistill.errors import ModelLoadError
    from gendistill.students import StudentClassifier

    def action() -> None:
        inputs = list(texts or [])
        if file is not None:
            try:
                inputs += [line.rstrip("\n") for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as error:
                raise GendistillError(f"{file}: cannot read ({error})") from None
        if not inputs:
            raise GendistillError("no texts: pass them as arguments or with --file")
        directory = model_dir / "student" if (model_dir / "student" / "config.json").exists() else model_dir
        if (directory / "model.onnx").exists():  # an export folder: the torch-free predictor
            from gendistill.inference import ExportDirError, Predictor

            try:
                model: Any = Predictor(directory)
            except ExportDirError as error:
                raise ModelLoadError(str(error)) from None
        elif (directory / "config.json").exists():
            model = StudentClassifier.from_pretrained(directory)
        else:
            raise ModelLoadError(
                f"{model_dir}: no student found (expected a run directory, a student folder or an export folder)"
            )
        probabilities = model.predict_proba(inputs)
        for text, row in zip(inputs, probabilities, strict=True):
            label = model.label_names[int(row.argmax())]
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "text": text,
                            "label": label,
                            "probabilities": dict(zip(model.label_names, map(float, row), strict=True)),
                        }
                    )
                )
            else:
                typer.echo(label)

    _guard(action)


def _print_summary(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="gendistill")
    for column in ("model", "accuracy", "macro-F1", "params", "examples/s"):
        table.add_column(column)
    for name in ("teacher", "student", "baseline_student"):
        row = report.get(name)
        if row:
            accuracy = row.get("accuracy")
            table.add_row(
                name,
                "–" if accuracy is None else f"{100 * accuracy:.1f}",
                "–" if row.get("macro_f1") is None else f"{100 * row['macro_f1']:.1f}",
                f"{row['params']:,}",
                f"{row['examples_per_s']:,.0f}",
            )
    Console(file=sys.stdout).print(table)


from gendistill.deploy_cli import register as _register_deploy  # noqa: E402 - commands need `app` and `_guard`

_register_deploy(app)

if __name__ == "__main__":
    app()
