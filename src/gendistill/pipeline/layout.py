"""Every path inside a run directory, in one place: stages, the runner, the report and export read them here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    root: Path

    # the run itself
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def lock_owner(self) -> Path:
        return self.root / ".lock.json"

    def checkpoints(self, name: str) -> Path:
        return self.root / "checkpoints" / name

    def trained_model(self, name: str) -> tuple[Path, ...]:
        """A model a training stage saves (`teacher`, `generator`): its folder, its checkpoints, and the
        temporary twins of both that an interrupted atomic save can leave."""
        folder, checkpoints = self.root / name, self.checkpoints(name)
        return folder, folder.with_name(f"{name}.tmp"), checkpoints, checkpoints.with_name(f"{name}.tmp")

    # data
    @property
    def data(self) -> Path:
        return self.root / "data"

    def split(self, name: str) -> Path:
        return self.data / f"{name}.parquet"

    @property
    def label_names(self) -> Path:
        return self.data / "labels.json"

    @property
    def data_stats(self) -> Path:
        return self.data / "stats.json"

    # models
    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    @property
    def teacher_cache(self) -> Path:
        return self.teacher / ".cache"

    @property
    def generator(self) -> Path:
        return self.root / "generator"

    @property
    def student(self) -> Path:
        return self.root / "student"

    @property
    def rounds(self) -> Path:
        return self.root / "rounds"

    @property
    def rounds_student(self) -> Path:
        """The student of the round the agreement rounds chose (stage `rounds`)."""
        return self.rounds / "student"

    @property
    def rounds_ledger(self) -> Path:
        return self.rounds / "rounds.json"

    @property
    def final_student(self) -> Path:
        """The run's student: the one agreement rounds chose when they ran (their folder appears whole, renamed
        into place), else the one-shot student of stage `distill`."""
        return self.rounds_student if self.rounds_student.is_dir() else self.student

    @property
    def baseline_student(self) -> Path:
        return self.root / "baseline_student"

    # transfer set and its labels
    @property
    def transfer(self) -> Path:
        return self.root / "transfer"

    @property
    def transfer_summary(self) -> Path:
        return self.transfer / "summary.json"

    @property
    def labels(self) -> Path:
        return self.root / "labels"

    @property
    def train_logits(self) -> Path:
        return self.labels / "train.parquet"

    # answers of served LLMs (sources and teachers), kept across reruns and --force: no stage's output
    @property
    def llm_cache(self) -> Path:
        return self.root / "cache" / "llm-requests.sqlite"

    # report
    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))
