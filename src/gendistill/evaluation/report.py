"""The run's report as a typed object: report.json is its JSON form, and report.md, report.html, the CLI summary,
export metadata and the benchmarks all read it through this class, never through ad-hoc dict keys."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr

from gendistill.evaluation.calibration import BOUND_PROBABILITY
from gendistill.io import read_json, write_json

MODEL_ROWS = ("teacher", "student", "baseline_student")
WIDE_SPREAD = 1.5  # a model's fastest timed pass over its slowest above this: its throughput is flagged


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")  # reports written by newer versions still load


class ClassMetrics(_Part):
    """One class's scores on the test set (scikit-learn's precision_recall_fscore_support, zero_division=0)."""

    precision: float
    recall: float
    f1: float
    support: int


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default method), without importing numpy here."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Throughput(_Part):
    """Examples per second over several timed passes of the same texts: one figure hides how much a shared
    machine's load moves it, so the report keeps every pass, their median and spread."""

    median: float
    p10: float
    p90: float
    spread: float  # fastest pass / slowest pass
    passes: list[float]

    @classmethod
    def from_passes(cls, passes: list[float]) -> Throughput:
        return cls(
            median=statistics.median(passes),
            p10=_quantile(passes, 0.1),
            p90=_quantile(passes, 0.9),
            spread=max(passes) / max(min(passes), 1e-12),
            passes=list(passes),
        )

    @property
    def wide(self) -> bool:
        return self.spread > WIDE_SPREAD


class ReliabilityPoint(_Part):
    """One non-empty bin of a reliability diagram (equal-width over (0, 1]): its bounds, texts, mean top-label
    confidence and accuracy."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


class Reliability(_Part):
    before: list[ReliabilityPoint] = Field(default_factory=list)
    after: list[ReliabilityPoint] = Field(default_factory=list)  # empty when no temperature was fitted


class CalibrationRow(_Part):
    """A model's calibration: `temperature` fitted on `fitted_on` (a held-out split, never the test set), ECE (15
    equal-width bins) and multi-class Brier score on the test set before and after. `fitted_temperature` is the fit
    on the whole split, and `temperature` is it or 1.0: the cross-validated NLL of the fit (`cv_nll_fitted`) has to
    beat that of T = 1 (`cv_nll_identity`) for it to be used (evaluate.temperature). Not fitted: `method`,
    `temperature` and the `_after` values are None and `note` says why."""

    method: str | None = None
    temperature: float | None = None
    fitted_temperature: float | None = None
    cv_nll_fitted: float | None = None
    cv_nll_identity: float | None = None
    fitted_on: str | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    brier_before: float | None = None
    brier_after: float | None = None
    note: str | None = None
    reliability: Reliability = Field(default_factory=Reliability)

    @property
    def fit_set_aside(self) -> bool:
        """A temperature was fitted but lost to T = 1 in cross-validation, so the model keeps its own."""
        return self.temperature == 1.0 and self.fitted_temperature not in (None, 1.0)


class RiskCoverageCurve(_Part):
    """Answering the most confident texts first: the error rate among the answered (`risk`) against the share
    answered (`coverage`), with the confidence threshold at each point; on the `split` named (the test set when
    there is one), with calibrated probabilities."""

    split: str
    coverage: list[float] = Field(default_factory=list)
    risk: list[float] = Field(default_factory=list)
    threshold: list[float] = Field(default_factory=list)


class SelectiveRow(_Part):
    """Selective prediction: the lowest confidence threshold reaching `target_accuracy` on the held-out split
    (None: none reached it, or there was no held-out split), and the share answered (coverage) and accuracy of the
    answered texts at that threshold on held-out and on test. With `guarantee`, "reaching" means with that
    probability (a Clopper-Pearson bound, not the held-out accuracy itself). `answered_heldout` counts the held-out
    texts the threshold answers and `accuracy_heldout_lower` bounds their accuracy from below with probability
    `bound_probability`: a threshold chosen on a handful of texts says so."""

    target_accuracy: float
    guarantee: float | None = None
    threshold: float | None = None
    coverage_heldout: float | None = None
    accuracy_heldout: float | None = None
    answered_heldout: int | None = None
    accuracy_heldout_lower: float | None = None
    bound_probability: float | None = None
    coverage_test: float | None = None
    accuracy_test: float | None = None
    curve: RiskCoverageCurve | None = None


class ModelRow(_Part):
    """One model's measurements on the test set and on the CPU. `examples_per_s` is the median of `throughput`'s
    passes; `confusion_matrix` rows are the true classes, columns the predicted ones, both in `label_names` order."""

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
    throughput: Throughput | None = None
    per_class: dict[str, ClassMetrics] | None = None
    confusion_matrix: list[list[int]] | None = None
    # a multi-label task (`Report.multi_label`): accuracy stays unset, per_class holds the per-label scores
    micro_f1: float | None = None
    subset_accuracy: float | None = None  # every label of a text right
    hamming_loss: float | None = None  # the share of wrong label decisions
    thresholds: list[float] | None = None  # per label, as the model decided with them
    thresholds_fitted_on: str | None = None  # "validation", or None: 0.5 for every label

    def score(self, multi_label: bool) -> float | None:
        """The headline figure: micro-F1 in a multi-label task, accuracy otherwise."""
        return self.micro_f1 if multi_label else self.accuracy

    calibration: CalibrationRow | None = None
    selective: SelectiveRow | None = None

    def calibration_summary(self) -> dict[str, float]:
        """The calibration figures a model card carries: temperature, test ECE before/after, the stored threshold
        and its test coverage (only those measured)."""
        calibration, selective = self.calibration, self.selective
        values = {
            "temperature": calibration.temperature if calibration else None,
            "ece_before": calibration.ece_before if calibration else None,
            "ece_after": calibration.ece_after if calibration else None,
            "min_confidence": selective.threshold if selective else None,
            "target_accuracy": selective.target_accuracy if selective and selective.threshold is not None else None,
            "accuracy_guarantee": selective.guarantee if selective and selective.threshold is not None else None,
            "coverage_test": selective.coverage_test if selective else None,
        }
        return {key: value for key, value in values.items() if value is not None}

    def calibration_sentence(self) -> str | None:
        """One sentence on calibration and selective prediction for a model card, or None when not fitted."""
        calibration, selective = self.calibration, self.selective
        if calibration is None or calibration.temperature is None:
            return None
        sentence = (
            f"Probabilities are temperature-scaled (T={calibration.temperature:.3f}, fitted on the "
            f"{calibration.fitted_on}): expected calibration error on test {pct(calibration.ece_before)}% → "
            f"{pct(calibration.ece_after)}%."
        )
        if calibration.fit_set_aside:
            sentence = (
                f"Probabilities are the model's own (T=1.000: the temperature {calibration.fitted_temperature:.3f} "
                f"fitted on the {calibration.fitted_on} did not lower the cross-validated NLL): expected "
                f"calibration error on test {pct(calibration.ece_before)}%."
            )
        if selective is not None and selective.threshold is not None:
            chosen_for = f"{pct(selective.target_accuracy)}% held-out accuracy"
            if selective.guarantee is not None:
                chosen_for = f"{pct(selective.target_accuracy)}% accuracy with probability {selective.guarantee:g}"
            if selective.answered_heldout is not None:
                chosen_for += f" on {selective.answered_heldout} answered held-out texts"
                if selective.accuracy_heldout_lower is not None and selective.bound_probability is not None:
                    chosen_for += (
                        f", whose accuracy is at least {pct(selective.accuracy_heldout_lower)}% with probability "
                        f"{selective.bound_probability:g}"
                    )
            sentence += (
                f" Answering only above confidence {selective.threshold:.3f} (chosen for "
                f"{chosen_for}) covers {pct(selective.coverage_test)}% of "
                f"the test set at {pct(selective.accuracy_test)}% accuracy."
            )
        return sentence


# `n` is the source's config key all the way through; report.json files and transfer summaries written before that
# name it `requested`, and still load
_N = AliasChoices("n", "requested")


class SourceRow(_Part):
    type: str
    n: int | None = Field(default=None, validation_alias=_N)  # texts to keep (None: all the source has)
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
    n: int = Field(default=0, validation_alias=_N)  # the sources' `n` summed
    generated: int = 0
    classes: dict[str, int] = Field(default_factory=dict)  # the student's transfer texts by the teacher's label
    curated: dict[str, int] = Field(default_factory=dict)  # texts the label stage's curation dropped, by reason
    trained_on: int | None = None  # transfer texts the student trained on (kept minus curated)


class LossPoint(_Part):
    epoch: int
    step: int | None = None  # optimizer steps at the end of this epoch
    loss: float  # the epoch's mean training loss
    validation: float | None = None  # validation accuracy, when a validation set was given


class TrainingCurve(_Part):
    """One training loop: per-epoch losses where the stage kept them (students), else its final loss."""

    loss: str | None = None  # what the loss is, e.g. "cross-entropy"
    steps: int | None = None
    epochs: int | None = None
    final_loss: float | None = None
    history: list[LossPoint] = Field(default_factory=list)


class SpeedSettings(_Part):
    """How throughput was measured, and how busy the machine was while it was."""

    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads while timing
    cpus: int | None = None  # CPUs this process may run on
    load_average: float | None = None  # the machine's 1-minute load average right after timing
    batch_size: int | None = None
    examples: int | None = None  # distinct texts timed (a pass repeats them until it has run `min_seconds`)
    passes: int | None = None  # timed passes per model, interleaved across models
    min_seconds: float | None = None
    wide_spread: float = WIDE_SPREAD

    @property
    def busy(self) -> bool:
        """Other processes competed for the CPUs: the load beyond this process's own threads exceeds half the
        CPUs (on 2 CPUs: more than one core's worth of other work, on average over the last minute)."""
        if self.load_average is None or not self.cpus:
            return False
        return self.load_average - (self.threads or 1) > self.cpus / 2


class RoundRow(_Part):
    """One agreement round (round 0: the one-shot student)."""

    round: int
    labels: int  # teacher labels spent on unlabeled texts so far: transfer set, held-out slice, picks
    picked: int = 0
    agreement: float  # with the teacher on the held-out slice: what the rounds stop and choose on
    accuracy: float | None = None  # on the test set: reported, never used to choose
    picked_agreement: float | None = None  # the picking student with the teacher on its picks
    candidates: int | None = None
    teacher_usage: dict[str, float] = Field(default_factory=dict)  # a served teacher's requests and tokens
    pool_usage: dict[str, float] = Field(default_factory=dict)  # an llm pool's requests and tokens


class Rounds(_Part):
    select: str
    holdout: int
    chosen_round: int
    stopped: str
    labels: int
    teacher_usage: dict[str, float] = Field(default_factory=dict)
    pool_usage: dict[str, float] = Field(default_factory=dict)
    history: list[RoundRow] = Field(default_factory=list)


def usage_sentence(rounds: Rounds) -> str:
    """What the rounds cost a served LLM, e.g. "the teacher: 1,200 requests, 96,000 prompt tokens; the llm pool:
    ..."; empty for local models."""
    parts = []
    for who, usage in (("the teacher", rounds.teacher_usage), ("the llm pool", rounds.pool_usage)):
        spent = [f"{int(value):,} {key.replace('_', ' ')}" for key, value in usage.items() if value]
        if spent:
            parts.append(f"{who}: {', '.join(spent)}")
    return f"Served-LLM usage of the rounds, {'; '.join(parts)}." if parts else ""


class StageRow(_Part):
    status: str  # ran: in this invocation; reused: finished earlier; skipped: does not apply to this config
    seconds: float | None = None


class Report(_Part):
    run_dir: str = ""
    label_names: list[str] = Field(default_factory=list)
    train_examples: int = 0
    test_examples: int = 0
    multi_label: bool = False  # each text any number of labels: scored by micro-F1 and per label, not accuracy
    teacher: ModelRow | None = None
    student: ModelRow | None = None
    baseline_student: ModelRow | None = None
    ratios: dict[str, float] = Field(default_factory=dict)
    transfer_set: TransferSet = Field(default_factory=TransferSet)
    rounds: Rounds | None = None
    speed: SpeedSettings = Field(default_factory=SpeedSettings)
    training: dict[str, TrainingCurve] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    stages: dict[str, StageRow] = Field(default_factory=dict)
    plots: dict[str, str] = Field(default_factory=dict)  # plot name -> PNG path relative to the report
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

    @property
    def html_path(self) -> Path:
        return self.path.with_name("report.html")

    def models(self) -> list[tuple[str, ModelRow]]:
        return [(name, row) for name in MODEL_ROWS if (row := getattr(self, name)) is not None]

    def headline(self) -> str | None:
        """One line: the student's accuracy next to its teacher's (and the baseline's), at what share of the
        teacher's parameters and how much faster, e.g. "student 93.5% (teacher 96.5%) at 1/24 of the teacher's
        params, 120x faster". None without a student."""
        student, teacher, baseline = self.student, self.teacher, self.baseline_student
        if student is None:
            return None
        multi = self.multi_label
        score = student.score(multi)
        if score is not None and teacher is not None and teacher.score(multi) is not None:
            others = [f"teacher {pct(teacher.score(multi))}%"]
            if baseline is not None and baseline.score(multi) is not None:
                others.append(f"labeled-only baseline {pct(baseline.score(multi))}%")
            line = f"student {'micro-F1 ' if multi else ''}{pct(score)}% ({', '.join(others)})"
        else:
            line = "student (no test set)"
        tail = []
        params = self.ratios.get("params_teacher_over_student")
        if params:
            tail.append(f"at 1/{params:.0f} of the teacher's params")
        speed = self.ratios.get("speed_student_over_teacher")
        if speed:
            varied = any(row.throughput is not None and row.throughput.wide for _, row in self.models())
            tail.append(f"{speed:.0f}x faster" + (" (timing varied: see the report)" if varied else ""))
        return " ".join([line, ", ".join(tail)]) if tail else line

    def warnings(self) -> list[str]:
        """Why a reader should not trust the throughput figures as they stand: a wide spread between timed passes,
        or other work on the machine while timing."""
        out = []
        for name, row in self.models():
            throughput = row.throughput
            if throughput is not None and throughput.wide:
                out.append(
                    f"{name} throughput varied {throughput.spread:.1f}x between its {len(throughput.passes)} timed "
                    f"passes ({min(throughput.passes):,.0f} to {max(throughput.passes):,.0f} examples/s; wide means "
                    f"over {self.speed.wide_spread:g}x)"
                )
        if self.speed.busy:
            out.append(
                f"the machine was busy while timing (load average {self.speed.load_average:.1f} on "
                f"{self.speed.cpus} CPUs, of which this process's {self.speed.threads} thread(s) account for at most "
                f"{self.speed.threads})"
            )
        if out:
            out.append(
                "speed figures are unreliable: rerun `gendistill evaluate RUN_DIR` on an idle machine (the ratio to "
                "the teacher is measured pass by pass, so it moves less than the absolute figures)"
            )
        return out

    @classmethod
    def read(cls, path: str | Path) -> Report:
        report = cls.model_validate(read_json(path))
        report._path = Path(path)
        return report

    def write_json(self, path: str | Path) -> None:
        """report.json alone (`evaluation.pages.write_report` writes it with report.md and report.html)."""
        self._path = Path(path)
        write_json(self._path, self.model_dump(mode="json"))


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal ("86.8"), or "–" when not measured (tables, card, report pages)."""
    return "–" if value is None else f"{100 * value:.1f}"


def count(value: float | None) -> str:
    """A whole number with thousands separators ("1,234"), or "–" when not measured."""
    return "–" if value is None else f"{value:,.0f}"


def throughput_range(row: ModelRow) -> str:
    """ "p10–p90" of a model's timed passes, or "–"."""
    if row.throughput is None:
        return "–"
    return f"{row.throughput.p10:,.0f}–{row.throughput.p90:,.0f}"


def speed_sentence(report: Report) -> str:
    speed = report.speed
    load = "" if speed.load_average is None else f", load average {speed.load_average:.1f}"
    return (
        f"Throughput on {speed.device}: median (and p10–p90) of {speed.passes or 1} timed pass(es) per model over "
        f"{speed.examples} texts (repeated until a pass has run {speed.min_seconds or 0:g} s) at batch "
        f"{speed.batch_size}, interleaved across models, with {speed.threads} torch "
        f"thread(s) on {speed.cpus or '?'} CPU(s){load}. Figures from one run on a shared machine can move between "
        "runs; compare models within one report."
    )


def calibration_cells(row: ModelRow) -> list[str] | None:
    """A model's calibration as table cells (report.md, report.html): method and temperature, ECE and Brier on
    test before -> after, what it was fitted on (or why not). None when the model has no calibration row."""
    calibration = row.calibration
    if calibration is None:
        return None

    def change(before: float | None, after: float | None, scale: float, digits: int) -> str:
        shown = "–" if before is None else f"{scale * before:.{digits}f}"
        return shown if after is None else f"{shown} → {scale * after:.{digits}f}"

    method = "–" if calibration.temperature is None else f"{calibration.method}, T={calibration.temperature:.3f}"
    if calibration.fit_set_aside:
        method += f" (the fitted T={calibration.fitted_temperature:.3f} did not lower the cross-validated NLL)"
    return [
        method,
        change(calibration.ece_before, calibration.ece_after, 100, 2),
        change(calibration.brier_before, calibration.brier_after, 1, 4),
        calibration.fitted_on or calibration.note or "–",
    ]


CALIBRATION_HEADER = ["model", "calibration", "ECE % (test)", "Brier (test)", "fitted on"]


def selective_cells(row: ModelRow) -> list[str] | None:
    """A model's selective prediction as table cells: the threshold and, at it, coverage and accuracy on held-out
    and on test. None when the model has no selective row."""
    selective = row.selective
    if selective is None:
        return None
    fitted = row.calibration is not None and row.calibration.method is not None
    threshold = f"{selective.threshold:.4f}" if selective.threshold is not None else "none reached"
    if selective.threshold is None and not fitted:
        threshold = "not chosen (no held-out split)"
    target = pct(selective.target_accuracy)
    return [
        target if selective.guarantee is None else f"{target} (p ≥ {selective.guarantee:g})",
        threshold,
        pct(selective.coverage_heldout),
        pct(selective.accuracy_heldout),
        "–" if selective.answered_heldout is None else str(selective.answered_heldout),
        pct(selective.accuracy_heldout_lower),
        pct(selective.coverage_test),
        pct(selective.accuracy_test),
    ]


def selective_note(report: Report) -> str:
    """What the selective-prediction table's threshold is, for the report's pages (markdown and HTML)."""
    guarantees = {row.selective.guarantee for _, row in report.models() if row.selective is not None}
    guarantee = next(iter(guarantees - {None}), None)
    if guarantee is None:
        return "The lowest confidence threshold whose answered held-out texts reach the target accuracy"
    return (
        f"The confidence threshold found to keep the target accuracy on new texts with probability {guarantee:g} "
        "(an exact binomial bound on the answered held-out texts: evaluate.accuracy_guarantee)"
    )


SELECTIVE_HEADER = [
    "model",
    "target accuracy %",
    "threshold",
    "coverage % (held-out)",
    "accuracy % (held-out)",
    "answered (held-out)",
    f"accuracy lower bound % (p {BOUND_PROBABILITY:g})",
    "coverage % (test)",
    "accuracy % (test)",
]


CONFUSION_TABLE_LIMIT = 20  # classes; larger matrices are only in report.json and the picture
