"""The CLI's global flags and help: --version, -h, --quiet/--verbose through the `gendistill` logger, readable types
in every command's --help, and the per-epoch lines a training loop prints when no progress bar is shown."""

from __future__ import annotations

import logging

import pytest
import yaml
from conftest import LABELS, labeled
from typer.testing import CliRunner

from gendistill import __version__, progress
from gendistill.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def default_verbosity():
    yield
    progress.set_verbosity(logging.INFO)


def test_version_and_short_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"gendistill {__version__}"
    for args in (["-h"], ["run", "-h"], ["predict", "--help"], ["push", "-h"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage:" in result.output, args


def test_every_commands_help_shows_readable_types():
    commands = [command.name or command.callback.__name__ for command in app.registered_commands]
    assert {"run", "predict", "export", "serve", "push", "evaluate"} <= set(commands)
    for command in [None, *commands]:
        result = runner.invoke(app, [command, "--help"] if command else ["--help"], env={"COLUMNS": "160"})
        assert result.exit_code == 0, (command, result.output)
        for raw in ("list[", "<bool>", "NoneType"):
            assert raw not in result.output, (command, raw, result.output)
    predict_help = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "160"}).output
    assert "[TEXT]..." in predict_help and "--file" in predict_help and "FILE" in predict_help
    assert "KEY=VALUE" in runner.invoke(app, ["run", "--help"], env={"COLUMNS": "160"}).output


def test_quiet_and_verbose(tmp_path):
    """A config with an old-style key logs a note (INFO) before its missing data file stops the run (an error)."""
    config = {
        "data": {"train": str(tmp_path / "missing.jsonl")},
        "teacher": {"model": "prajjwal1/bert-tiny"},
        "generator": {"top_p": 0.9},  # moved to the generate source: a migration note
        "transfer": {"sources": [{"type": "generate", "n": 10}]},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["run", str(path), "--run-dir", str(tmp_path / "run")]
    default = runner.invoke(app, args)
    quiet = runner.invoke(app, ["--quiet", *args])
    verbose = runner.invoke(app, ["-v", *args])
    for result in (default, quiet, verbose):
        assert result.exit_code == 2 and "file not found" in result.output  # errors always show
    assert "sampling settings belong to the generate source" in default.output
    assert "sampling settings belong to the generate source" not in quiet.output
    assert "sampling settings belong to the generate source" in verbose.output
    both = runner.invoke(app, ["-q", "-v", *args])
    assert both.exit_code != 0 and "contradict" in both.output


def test_messages_go_through_the_gendistill_logger(capsys):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("gendistill")
    logger.addHandler(handler)
    try:
        progress.log("[bold]teacher[/bold] ...")
        progress.warning("3 texts truncated [sic] [/odd]")
        progress.debug("hidden at INFO")
        progress.set_verbosity(logging.WARNING)
        progress.log("hidden when quiet")
        progress.warning("still shown")
    finally:
        logger.removeHandler(handler)
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("INFO", "teacher ..."),  # other handlers get the plain text, without rich markup
        ("WARNING", "warning: 3 texts truncated [sic] [/odd]"),
        ("WARNING", "warning: still shown"),
    ]
    err = capsys.readouterr().err
    assert "teacher ..." in err and "still shown" in err and "hidden" not in err


def test_training_prints_a_line_per_epoch_without_a_terminal(monkeypatch, capsys):
    from gendistill.config import StudentConfig
    from gendistill.runtime import make_accelerator
    from gendistill.students.building import make_student
    from gendistill.students.examples import InMemoryExamples
    from gendistill.students.trainer import train_student

    monkeypatch.delenv("GENDISTILL_PROGRESS")  # auto: no bar, since stderr is captured (not a terminal)
    texts, gold = labeled(4, 0)
    config = StudentConfig(arch="bag", init="random", embedding_dim=8, epochs=3, batch_size=4)
    student = make_student(config, texts, LABELS, seed=0)
    examples = InMemoryExamples.from_texts(student, texts, gold)
    train_student(student, examples, config, make_accelerator("cpu", "no", 0), seed=0)
    lines = [line for line in capsys.readouterr().err.splitlines() if "epoch" in line]
    assert [line.split(" done")[0] for line in lines] == [f"distill: student: epoch {k}/3" for k in (1, 2, 3)]
    assert all("loss" in line for line in lines)
    progress.set_verbosity(logging.WARNING)  # --quiet: no per-epoch lines either
    train_student(student, examples, config, make_accelerator("cpu", "no", 0), seed=0)
    assert "epoch" not in capsys.readouterr().err


def test_report_to_trackers_are_checked_before_any_work(tmp_path, monkeypatch):
    config = {"data": {"train": str(tmp_path / "missing.jsonl")}, "teacher": {"model": "prajjwal1/bert-tiny"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["run", str(path), "--run-dir", str(tmp_path / "run")]
    typo = runner.invoke(app, [*args, "--report-to", "tensorbored"])
    assert typo.exit_code == 2 and "report_to: unknown tracker 'tensorbored'" in typo.output
    monkeypatch.setattr("accelerate.tracking.get_available_trackers", lambda: [])
    missing = runner.invoke(app, [*args, "--report-to", "tensorboard"])
    assert missing.exit_code == 2 and "report_to: tensorboard is not installed; pip install 'gendistill[tracking]'" in (
        missing.output
    )
