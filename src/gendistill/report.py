"""The run's report as a typed object: report.json is its JSON form, and report.md, the CLI summary, export
metadata and the benchmarks all read it through this class, never through ad-hoc dict keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from gendistill.io import read_json, write_json, write_text

MODEL_ROWS = ("teacher", "student", "baseline_student")


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")  # reports written by newer versions still load


class ModelRow(_Part):
    """One model's measurements on the test set and on the CPU."""

    kind: str | None = None
    arch: str | None = None
    init: str | None = None
    params: int | None = None
    size_bytes: int | None = None
    vocab_size: int | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    teacher_agreement: float | None = None
    examples_per_s: float | None = None


class SourceRow(_Part):
    type: str
    requested: int | None = None
    generated: int = 0
    kept: int = 0
    drops: dict[str, int] = Field(default_factory=dict)
    surplus: int = 0
    shards: int = 0
    note: str | None = None
    details: dict[str, Any] | None = None


class TransferSet(_Part):
    sources: list[SourceRow] = Field(default_factory=list)
    kept: int = 0
    requested: int = 0
    generated: int = 0


class StageRow(_Part):
    status: str  # ran: in this invocation; reused: finished earlier; skipped: does not apply to this config
    seconds: float | None = None


class Report(_Part):
    run_dir: str = ""
    label_names: list[str] = Field(default_factory=list)
    train_examples: int = 0
    test_examples: int = 0
    teacher: ModelRow | None = None
    student: ModelRow | None = None
    baseline_student: ModelRow | None = None
    ratios: dict[str, float] = Field(default_factory=dict)
    transfer_set: TransferSet = Field(default_factory=TransferSet)
    speed: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    stages: dict[str, StageRow] = Field(default_factory=dict)
    config_hash: str | None = None
    notes: list[str] = Field(default_factory=list)

    _path: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path:
        assert self._path is not None, "this report was not read from or written to a file"
        return self._path

    @property
    def markdown_path(self) -> Path:
        return self.path.with_name("report.md")

    def models(self) -> list[tuple[str, ModelRow]]:
        return [(name, row) for name in MODEL_ROWS if (row := getattr(self, name)) is not None]

    @classmethod
    def read(cls, path: str | Path) -> Report:
        report = cls.model_validate(read_json(path))
        report._path = Path(path)
        return report

    def write(self, path: str | Path) -> None:
        """report.json and, beside it, report.md."""
        self._path = Path(path)
        write_json(self._path, self.model_dump(mode="json"))
        write_text(self.markdown_path, render_markdown(self))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _int(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def render_markdown(report: Report) -> str:
    """A human-readable report.md."""
    lines = [f"# gendistill report: {report.run_dir}", ""]
    lines += [
        f"Test set: {report.test_examples} examples. Labeled training examples: {report.train_examples}."
        if report.test_examples
        else "No test set: accuracy not measured.",
        "",
    ]
    lines += ["| model | accuracy | macro-F1 | params | size (bytes) | examples/s (CPU) |", "|---|---|---|---|---|---|"]
    for name, row in report.models():
        lines.append(
            f"| {name} | {_pct(row.accuracy)} | {_pct(row.macro_f1)} | {_int(row.params)} "
            f"| {_int(row.size_bytes)} | {_int(row.examples_per_s)} |"
        )
    ratios = report.ratios
    if ratios:
        agreement = report.student.teacher_agreement if report.student else None
        lines += [
            "",
            f"Student vs teacher: {ratios.get('params_teacher_over_student', 0):.0f}x fewer parameters, "
            f"{ratios.get('speed_student_over_teacher', 0):.0f}x faster; agreement with the teacher on test: "
            f"{_pct(agreement)}%.",
        ]
    transfer = report.transfer_set
    if transfer.sources:
        lines += [
            "",
            "## Transfer set",
            "",
            "| source | requested | generated | kept | empty | too short | too long | duplicate | training copy |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for source in transfer.sources:
            drops = source.drops
            requested = source.requested if source.requested is not None else "all"
            lines.append(
                f"| {source.type} | {requested} | {source.generated} | {source.kept} | {drops.get('empty', 0)} "
                f"| {drops.get('too_short', 0)} | {drops.get('too_long', 0)} | {drops.get('duplicate', 0)} "
                f"| {drops.get('training_copy', 0)} |"
            )
        lines.append(f"\nTotal transfer texts: {transfer.kept}.")
    if report.stages:
        lines += ["", "## Stages", "", "| stage | this run | seconds |", "|---|---|---|"]
        for name, stage in report.stages.items():
            seconds = "–" if stage.seconds is None else f"{stage.seconds:.1f}"
            lines.append(f"| {name} | {stage.status} | {seconds} |")
        lines.append("\n'reused': finished by an earlier invocation (its seconds are from then).")
    for note in report.notes:
        lines.append(f"\nNote: {note}")
    return "\n".join(lines) + "\n"
