"""`gendistill run` and one command per stage (from the stage registry) that reruns that stage alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import gendistill.stages  # noqa: F401 - the CLI assembles the pipeline: registers every stage, in order
from gendistill.cli.app import app, guard, writing_into
from gendistill.config import load_config
from gendistill.errors import GendistillError, RunDirError
from gendistill.evaluation.report import throughput_range
from gendistill.pipeline.graph import pipeline
from gendistill.pipeline.layout import RunLayout
from gendistill.pipeline.runner import Run, force_choices, run_dir_for

DeviceOpt = Annotated[
    str | None, typer.Option("--device", metavar="auto|cpu|cuda", help="device (default: the config's)")
]


def _device_override(device: str | None) -> list[str]:
    return [f"device={device}"] if device else []


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config", metavar="CONFIG.yaml")],
    run_dir: Annotated[Path | None, typer.Option("--run-dir", metavar="DIR", help="default: runs/<name>")] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="NAME", help="run name under runs/ (default: the config's file name)"),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="override a config key (repeatable): student.epochs=5, transfer.sources.0.n=200",
        ),
    ] = None,
    force: Annotated[
        list[str] | None,
        typer.Option(
            "--force",
            metavar="STAGE|changed|all",
            help="rerun STAGE and everything after it (repeatable); 'all' reruns everything; 'changed' "
            "accepts a changed config and reruns only what it affects",
        ),
    ] = None,
    device: DeviceOpt = None,
    target_accuracy: Annotated[
        float | None,
        typer.Option(
            "--target-accuracy",
            metavar="A",
            help="selective prediction: choose the confidence threshold reaching accuracy A, in (0, 1), on held-out "
            "data (default 0.95); same as --set evaluate.target_accuracy=A",
        ),
    ] = None,
    accuracy_guarantee: Annotated[
        float | None,
        typer.Option(
            "--accuracy-guarantee",
            metavar="P",
            help="choose the threshold so that it keeps the target accuracy with probability P, in (0, 1) (an "
            "exact binomial bound on the held-out split: fewer texts answered); same as --set "
            "evaluate.accuracy_guarantee=P",
        ),
    ] = None,
    report_to: Annotated[
        list[str] | None,
        typer.Option(
            "--report-to",
            metavar="TRACKER",
            help="log every training loop to an experiment tracker (repeatable): tensorboard, mlflow, wandb, ...; "
            "same as --set report_to=[...]",
        ),
    ] = None,
) -> None:
    """Run every stage that is not done: data, teacher, generator, transfer, label, distill, rounds, baseline,
    evaluate."""

    def action() -> None:
        choices = force_choices()
        for value in force or []:
            if value not in choices:
                raise GendistillError(f"--force {value!r}: expected one of {', '.join(choices)}")
        trackers = [f"report_to=[{', '.join(report_to)}]"] if report_to else []
        if target_accuracy is not None and not 0 < target_accuracy < 1:  # NaN included
            raise GendistillError(f"--target-accuracy {target_accuracy}: expected a number strictly between 0 and 1")
        if accuracy_guarantee is not None and not 0 < accuracy_guarantee < 1:
            raise GendistillError(
                f"--accuracy-guarantee {accuracy_guarantee}: expected a probability strictly between 0 and 1"
            )
        target = [f"evaluate.target_accuracy={target_accuracy!r}"] if target_accuracy is not None else []
        if accuracy_guarantee is not None:
            target.append(f"evaluate.accuracy_guarantee={accuracy_guarantee!r}")
        cfg = load_config(config, [*(set_ or []), *_device_override(device), *trackers, *target])
        target = run_dir or run_dir_for(name or config.stem)
        writing_into(target, "the run directory")
        report = Run(cfg, target).run(force=force)
        if report is not None:
            print_report(report)

    guard(action)


def _stage_command(stage_name: str, command_name: str, help_text: str, hidden: bool = False) -> None:
    def command(
        run_dir: Annotated[Path, typer.Argument(help="an existing run directory", metavar="RUN_DIR")],
        device: DeviceOpt = None,
    ) -> None:
        def action() -> None:
            writing_into(run_dir, "the run directory")
            saved = RunLayout(run_dir).config
            if not saved.exists():
                raise RunDirError(
                    f"{run_dir}: not a run directory (no {saved.name}); start one with gendistill run CONFIG"
                )
            cfg = load_config(saved, _device_override(device))
            report = Run(cfg, run_dir).run(only=stage_name, force=[stage_name])
            typer.echo(f"{stage_name}: done in {run_dir}")
            if stage_name == "evaluate" and report is not None:
                print_report(report)

        guard(action)

    command.__doc__ = f"{help_text} Later stages are marked stale; the next `run` reruns them."
    app.command(command_name, hidden=hidden)(command)


def register_stage_commands() -> None:
    for stage in pipeline():
        if not stage.has_command:
            continue
        _stage_command(stage.name, stage.cli_name, stage.help)
    _stage_command("transfer", "generate", "Old name of `transfer`.", hidden=True)


def print_report(report: Any) -> None:
    """The summary table, where the report is, and its headline as the last line."""
    print_summary(report)
    typer.echo(f"report: {report.html_path} (and {report.path.name}, {report.markdown_path.name})")
    headline = report.headline()
    if headline:
        typer.echo(headline)


def print_summary(report: Any) -> None:
    """The models' table (throughput: the median of the timed passes, and their p10–p90), then any warning about
    the timing."""
    table = Table(title="gendistill")
    for column in ("model", "accuracy", "macro-F1", "params", "examples/s", "p10–p90"):
        table.add_column(column)
    for name, row in report.models():
        table.add_row(
            name,
            "–" if row.accuracy is None else f"{100 * row.accuracy:.1f}",
            "–" if row.macro_f1 is None else f"{100 * row.macro_f1:.1f}",
            "n/a" if row.params is None else f"{row.params:,}",
            "–" if row.examples_per_s is None else f"{row.examples_per_s:,.0f}",
            throughput_range(row),
        )
    Console(file=sys.stdout).print(table)
    for warning in report.warnings():
        typer.echo(f"warning: {warning}")


register_stage_commands()
