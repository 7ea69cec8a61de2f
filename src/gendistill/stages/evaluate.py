"""Stage `evaluate`: teacher, student and baseline on the test set and on the CPU, measured in the same process;
writes report.json, report.md, report.html and plots/ (evaluation.report, evaluation.plots). Every
evaluate setting but `target_accuracy` is a knob: `--force evaluate` re-measures without retraining anything.

It also calibrates each model on a held-out split (the run's validation set; else, for the students, the agreement
rounds' teacher-labeled held-out slice) and chooses its confidence threshold for `evaluate.target_accuracy` there,
never on the test set; the students' calibration.json is written beside their weights (artifacts.calibration)."""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.numpy import load_file, save_file

from gendistill.artifacts.calibration import CALIBRATION_FILE, Calibration, write_calibration
from gendistill.evaluation import plots
from gendistill.evaluation.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE
from gendistill.evaluation.measure import (
    calibrate_and_select,
    classification_metrics,
    per_class_metrics,
    timed_passes,
    weights_size,
)
from gendistill.evaluation.multilabel import DEFAULT_THRESHOLD, decide, indicator, tune_thresholds
from gendistill.evaluation.multilabel import scores as multilabel_scores
from gendistill.evaluation.pages import write_report
from gendistill.evaluation.report import (
    ClassMetrics,
    LossPoint,
    ModelRow,
    Report,
    RoundRow,
    Rounds,
    SelectiveRow,
    SpeedSettings,
    StageRow,
    Throughput,
    TrainingCurve,
    TransferSet,
)
from gendistill.io import atomic_path, read_json, stable_hash, texts_sha256
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, pipeline, register
from gendistill.sections import key_payload
from gendistill.stages.rounds import round_student
from gendistill.students.classifier import StudentClassifier
from gendistill.students.temperature_choice import describe as describe_temperature_choice
from gendistill.training.budget import steps_per_epoch


def teacher_test_logits(ctx: StageContext, teacher: Any, texts: list[str], split: str = "test") -> np.ndarray:
    """The teacher's logits of a split's texts, cached per (teacher, texts) so that rerunning evaluate after a
    student change does not pay for the teacher's pass again."""
    teacher_key = ctx.records.get("teacher", {}).get("key")
    path = ctx.layout.teacher_cache / f"{split}_logits-{stable_hash([teacher_key, texts_sha256(texts)])}.safetensors"
    if path.exists():
        return load_file(str(path))["logits"]
    logits = teacher.logits(texts, ctx.config.evaluate.batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"logits": logits}, str(tmp))
    return logits


def run_evaluate(ctx: StageContext) -> dict[str, Any]:
    config = ctx.config.evaluate
    layout = ctx.layout
    task = ctx.task()
    num_labels = len(task.label_names)
    test = task.test
    report = Report(
        run_dir=str(layout.root),
        label_names=task.label_names,
        train_examples=len(task.train),
        test_examples=len(test) if test else 0,
    )
    speed_texts = (test.texts if test else task.train.texts)[: config.speed_examples]

    report.multi_label = task.multi_label

    def scored(row: ModelRow, predictions: np.ndarray) -> ModelRow:
        assert test is not None
        if task.multi_label:
            return multi_label_row(row, indicator(test.labels, num_labels), predictions, task.label_names)
        row = row.model_copy(update=classification_metrics(test.labels, predictions, num_labels))
        row.per_class, row.confusion_matrix = per_class_metrics(test.labels, predictions, task.label_names)
        return row

    teacher = ctx.config.teacher.load(layout.teacher, torch.device("cpu"))
    teacher_predictions = None
    teacher_thresholds: dict[str, Any] = {}
    test_logits: dict[str, np.ndarray] = {}  # per model, for calibration
    held_out_logits: dict[str, Any] = {}  # per model: texts -> logits
    if task.multi_label:
        teacher_thresholds = teacher_decision_thresholds(ctx, teacher, num_labels)
    if test and task.multi_label:
        probabilities = sigmoid(teacher_test_logits(ctx, teacher, test.texts))
        teacher_predictions = decide(probabilities, teacher_thresholds["values"])
    elif test:
        test_logits["teacher"] = teacher_test_logits(ctx, teacher, test.texts)
        teacher_predictions = test_logits["teacher"].argmax(axis=1)
    held_out_logits["teacher"] = lambda texts: teacher_test_logits(ctx, teacher, texts, "validation")
    described = teacher.describe()  # after the test pass: a served LLM counts what its labeling cost
    report.notes += described.pop("notes", [])
    report.teacher = ModelRow(kind=ctx.config.teacher.kind, **described)
    if test:
        report.teacher = scored(report.teacher, teacher_predictions)
    if task.multi_label:
        report.teacher.thresholds = teacher_thresholds["values"]
        report.teacher.thresholds_fitted_on = teacher_thresholds["fitted_on"]
    predictors = {}
    students: dict[str, tuple[StudentClassifier, Any]] = {}  # their model cards are rewritten with the report
    if "examples_per_s" not in described:  # a served LLM reports its own (timing it would ask the server again)
        predictors["teacher"] = lambda batch: teacher.logits(batch, config.batch_size)

    for name, directory in (("student", layout.final_student), ("baseline_student", layout.baseline_student)):
        if not directory.exists():
            continue
        student = StudentClassifier.from_pretrained(directory)
        row = ModelRow(
            kind=name,
            arch=student.spec.arch,
            init=student.info.get("init"),
            params=student.num_parameters,
            vocab_size=student.spec.vocab_size,
            size_bytes=weights_size(directory),
        )
        if test and task.multi_label:
            predictions = decide(student.predict_proba(test.texts, config.batch_size), student.decision_thresholds)
            row = scored(row, predictions)
            # a text agrees when the student gives exactly the teacher's set of labels
            row.teacher_agreement = float(np.mean((predictions == teacher_predictions).all(axis=1)))
        elif test:
            test_logits[name] = student.logits(test.texts, config.batch_size)
            predictions = test_logits[name].argmax(axis=1)
            row = scored(row, predictions)
            row.teacher_agreement = float(np.mean(predictions == teacher_predictions))
        if task.multi_label:
            row.thresholds = student.decision_thresholds
            row.thresholds_fitted_on = "validation" if student.thresholds is not None else None
        predictors[name] = lambda batch, s=student: s.logits(batch, config.batch_size)
        held_out_logits[name] = predictors[name]
        students[name] = (student, directory)
        setattr(report, name, row)

    if task.multi_label:
        report.notes.append("calibration and selective prediction are for single-label tasks; not measured")
    else:
        report.notes += calibrate(ctx, report, held_out_split(ctx, task), held_out_logits, test_logits, test)

    passes = timed_passes(
        predictors, speed_texts, config.batch_size, config.threads, config.speed_passes, config.speed_min_seconds
    )
    for name, values in passes.items():
        row = getattr(report, name)
        row.throughput = Throughput.from_passes(values)
        row.examples_per_s = row.throughput.median
    report.speed = SpeedSettings(
        device="cpu",
        threads=config.threads or torch.get_num_threads(),
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        load_average=round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        batch_size=config.batch_size,
        examples=len(speed_texts),
        passes=config.speed_passes,
        min_seconds=config.speed_min_seconds,
    )

    if layout.transfer_summary.exists():
        transfer = TransferSet.model_validate(read_json(layout.transfer_summary))
        transfer.n = sum(s.n or 0 for s in transfer.sources)
        transfer.generated = sum(s.generated for s in transfer.sources)
        for index, (source, row) in enumerate(zip(ctx.config.transfer.sources, transfer.sources, strict=False)):
            report.notes += source.report(layout, index, row)
        labeled = ctx.records.get("label", {}).get("summary", {})
        transfer.classes = labeled.get("transfer_classes", {})
        transfer.curated = labeled.get("transfer_dropped", {})
        transfer.trained_on = labeled.get("transfer_kept")
        report.transfer_set = transfer
    report.rounds = rounds_report(ctx, test, config.batch_size)
    student_row, teacher_row = report.student, report.teacher
    if student_row is not None and teacher_row.params and student_row.params and "teacher" in passes:
        # the speed ratio pass by pass (both timed back to back), so load that changes between passes cancels out
        speedups = [s / t for s, t in zip(passes["student"], passes["teacher"], strict=True)]
        report.ratios = {
            "params_teacher_over_student": teacher_row.params / student_row.params,
            "size_teacher_over_student": (teacher_row.size_bytes or 0) / max(student_row.size_bytes or 1, 1),
            "speed_student_over_teacher": statistics.median(speedups),
            "speed_student_over_teacher_min": min(speedups),
            "speed_student_over_teacher_max": max(speedups),
        }
    report.training = training_curves(ctx)
    stats = read_json(layout.data_stats)
    report.data = {"truncated_texts": stats.get("truncated", 0), "pool": stats.get("pool")}
    report.stages = stage_rows(ctx)
    temperature_choice = (ctx.records.get("distill", {}).get("summary") or {}).get("temperature_choice")
    if temperature_choice:
        report.notes.append(describe_temperature_choice(temperature_choice))
    if not test:
        report.notes.append("no test set: accuracy and macro-F1 were not measured")
    if task.multi_label and not task.validation:
        report.notes.append(
            "multi-label: no validation split (data.validation), so every label decides at probability 0.5; give "
            "one to tune each label's threshold on it"
        )
    if ctx.config.data.zero_label:
        report.data["gold_labels"] = 0
        report.notes.append(
            "zero-label start: no gold labels were used (data.train not set); the classes were only named, and "
            "the teacher's labels of the transfer set were the student's only supervision"
        )
    report.config_hash = ctx.config.section_hash("data", "teacher", "generator", "transfer", "student")
    write_plots(report, ctx)
    write_report(report, layout.report_json)
    # each student folder's README.md was written when it was trained, before there were metrics to show
    for student, directory in students.values():
        student.write_card(directory, report=report, config=ctx.config)
    return {name: row.score(task.multi_label) for name, row in report.models()}


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def teacher_decision_thresholds(ctx: StageContext, teacher: Any, num_labels: int) -> dict[str, Any]:
    """A multi-label teacher's per-label thresholds, tuned on the validation split as the student's are (so the
    two are compared on equal terms); 0.5 for every label without one."""
    validation = ctx.task().validation
    if not validation:
        return {"fitted_on": None, "values": [DEFAULT_THRESHOLD] * num_labels}
    probabilities = sigmoid(teacher_test_logits(ctx, teacher, validation.texts, "validation"))
    return {
        "fitted_on": "validation",
        "values": tune_thresholds(indicator(validation.labels, num_labels), probabilities),
    }


def multi_label_row(row: ModelRow, truth: np.ndarray, predicted: np.ndarray, label_names: list[str]) -> ModelRow:
    """A model's multi-label test scores on its row: micro/macro-F1, subset accuracy, Hamming loss, per label."""
    result = multilabel_scores(truth, predicted, label_names)
    row = row.model_copy(
        update={key: result[key] for key in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")}
    )
    row.per_class = {name: ClassMetrics(**metrics) for name, metrics in result["per_label"].items()}
    return row


@dataclass
class HeldOut:
    """The split calibration and thresholds are fitted on: texts, their labels, what they are, and whether the
    labels are gold (else the teacher's, which cannot calibrate the teacher itself)."""

    texts: list[str]
    labels: np.ndarray
    description: str
    gold: bool


def held_out_split(ctx: StageContext, task: Any) -> HeldOut | None:
    """The run's validation set (gold labels); else the agreement rounds' held-out slice (pool texts the teacher
    labeled once, never trained on); else None: after training, no labeled text is left that no model saw."""
    if task.validation:
        labels = np.asarray(task.validation.labels)
        return HeldOut(task.validation.texts, labels, f"validation: {len(labels)} gold-labeled texts", gold=True)
    holdout = ctx.layout.rounds / "holdout.parquet"
    if ctx.records.get("rounds", {}).get("applies") is not False and holdout.is_file():
        table = pq.read_table(holdout)
        labels = np.stack(table.column("logits").to_numpy(zero_copy_only=False)).argmax(axis=1)
        description = f"rounds holdout: {len(labels)} held-out pool texts labeled by the teacher"
        return HeldOut(table.column("text").to_pylist(), labels, description, gold=False)
    return None


NOT_FITTED = (
    "not fitted: the run has no held-out split (data.validation is not set and no agreement rounds ran); set "
    "data.validation to calibrate and choose a confidence threshold"
)


def calibrate(
    ctx: StageContext,
    report: Report,
    held_out: HeldOut | None,
    held_out_logits: dict[str, Any],
    test_logits: dict[str, np.ndarray],
    test: Any,
) -> list[str]:
    """Each model's calibration and selective-prediction rows; the students' calibration.json (removed first, so a
    student never keeps one fitted under other settings). Returns the report's notes about it."""
    notes = []
    target = ctx.config.evaluate.target_accuracy
    gold = np.asarray(test.labels) if test else None
    for name, row in report.models():
        if name != "teacher":
            (stored_dir(ctx, name) / CALIBRATION_FILE).unlink(missing_ok=True)
        usable = held_out is not None and (held_out.gold or name != "teacher")
        held = (held_out_logits[name](held_out.texts), held_out.labels) if usable and held_out else None
        reason = NOT_FITTED if held_out is None else "not fitted: the held-out labels are the teacher's own"
        row.calibration, row.selective = calibrate_and_select(
            held_out=held,
            test=(test_logits[name], gold) if name in test_logits and gold is not None else None,
            target_accuracy=target,
            accuracy_guarantee=ctx.config.evaluate.accuracy_guarantee,
            fitted_on=held_out.description if held_out else None,
            not_fitted=reason,
            cross_validated=ctx.config.evaluate.temperature == "cross-validated",
        )
        if held is not None and name != "teacher":
            write_calibration(
                stored_dir(ctx, name),
                Calibration(
                    temperature=row.calibration.temperature or 1.0,
                    fitted_on=row.calibration.fitted_on,
                    min_confidence=row.selective.threshold,
                    target_accuracy=target,
                    accuracy_guarantee=ctx.config.evaluate.accuracy_guarantee,
                    coverage=row.selective.coverage_heldout,
                ),
            )
        temperature = row.calibration.fitted_temperature
        at_bound = temperature is not None and not MIN_TEMPERATURE * 1.01 < temperature < MAX_TEMPERATURE / 1.01
        # every held-out text right: a lower T always lowers the NLL, so the fit only says "sharpen"
        perfect = held is not None and bool((held[0].argmax(axis=1) == held[1]).all())
        if at_bound or perfect:
            notes.append(
                f"{name}: the fitted temperature {temperature:.3g} is unreliable: "
                + ("every held-out text is predicted right" if perfect else "it is at the end of its search range")
                + "; a larger held-out split (data.validation) gives a meaningful fit"
            )
        if held is not None and row.selective.threshold is None:
            notes.append(f"{name}: no confidence threshold reaches {target:g} accuracy on the held-out split")
        elif (warning := thin_threshold_note(name, row.selective)) is not None:
            notes.append(warning)
    if held_out is None:
        notes.append(f"calibration {NOT_FITTED}")
    elif not held_out.gold:
        notes.append(
            f"calibration fitted on the {held_out.description}: the students' probabilities are calibrated to agree "
            "with the teacher, and the teacher is not calibrated (its own labels cannot)"
        )
    return notes


# A threshold is "thin" when its answered held-out texts cannot tell its target from this much less (their lower
# bound is under target - THIN_MARGIN): a 95% threshold on 10 answered texts, all right, may well be an 85% one.
THIN_MARGIN = 0.05


def thin_threshold_note(name: str, selective: SelectiveRow) -> str | None:
    """A note when a threshold chosen for the held-out point estimate rests on too few answered texts to hold its
    target on new texts (a guaranteed threshold holds by construction: no note)."""
    lower, target = selective.accuracy_heldout_lower, selective.target_accuracy
    if selective.guarantee is not None or selective.threshold is None or lower is None or lower >= target - THIN_MARGIN:
        return None
    return (
        f"{name}: its {target:g} confidence threshold rests on {selective.answered_heldout} answered held-out texts "
        f"({selective.accuracy_heldout:.1%} right; with probability {selective.bound_probability:g} at least "
        f"{lower:.1%}): too few to hold the target on new texts; a larger held-out split (data.validation), or "
        "evaluate.accuracy_guarantee, gives a threshold that holds"
    )


def stored_dir(ctx: StageContext, name: str) -> Path:
    """The folder a student's calibration.json goes into: beside its weights."""
    return ctx.layout.final_student if name == "student" else ctx.layout.baseline_student


def rounds_report(ctx: StageContext, test: Any, batch_size: int) -> Rounds | None:
    """The agreement rounds' ledger, each round's student scored on the test set for the report only (the rounds
    chose on held-out teacher labels)."""
    if ctx.records.get("rounds", {}).get("applies") is False or not ctx.layout.rounds_ledger.exists():
        return None
    ledger = read_json(ctx.layout.rounds_ledger)
    rounds = Rounds.model_validate({key: value for key, value in ledger.items() if key != "history"})
    for record in ledger["history"]:
        row = RoundRow.model_validate(record)
        folder = round_student(ctx.layout, row.round)
        if test and folder.is_dir():
            predictions = StudentClassifier.from_pretrained(folder).logits(test.texts, batch_size).argmax(axis=1)
            row.accuracy = float(np.mean(predictions == np.asarray(test.labels)))
        rounds.history.append(row)
    return rounds


def write_plots(report: Report, ctx: StageContext) -> None:
    """The report's PNGs into plots/ (listed in `report.plots`, inlined by report.html); without matplotlib, a
    note instead."""
    try:
        paths = plots.write_plots(report, ctx.layout.plots)
    except plots.MissingMatplotlib as error:
        report.notes.append(str(error))
        return
    report.plots = {name: ctx.layout.relative(path) for name, path in paths.items()}


def training_curves(ctx: StageContext) -> dict[str, TrainingCurve]:
    """Every training loop's losses: per epoch for the students (their training.json), the final loss for the
    teacher and the generator (the only loss their stage records keep)."""
    curves = {}
    multi = ctx.task().multi_label
    cross_entropy = "binary cross-entropy per label" if multi else "cross-entropy"
    finals = (("teacher", "teacher", cross_entropy), ("generator", "generator", "next-token cross-entropy"))
    for stage, name, loss in finals:
        record = ctx.records.get(stage, {})
        summary = record.get("summary") or {}
        if record.get("applies") is not False and summary.get("final_loss") is not None:
            curves[name] = TrainingCurve(loss=loss, steps=summary.get("steps"), final_loss=summary["final_loss"])
    student = ctx.config.student
    kind = getattr(student.loss, "value", student.loss)  # an Enum member when the config was built in Python
    distill_loss = f"{kind} to the teacher's logits (+ {student.alpha:g} x cross-entropy on labeled texts)"
    if multi:  # each label a yes/no question: BCE against the teacher's tempered sigmoid (student.loss unused)
        distill_loss = f"BCE to the teacher's per-label probabilities (+ {student.alpha:g} x BCE on labeled texts)"
    students = (
        ("student", ctx.layout.final_student, "distill", distill_loss),
        ("baseline_student", ctx.layout.baseline_student, "baseline", cross_entropy),
    )
    for name, directory, stage, loss in students:
        path = directory / "training.json"
        if not path.exists():
            continue
        stats = read_json(path)
        examples = (ctx.records.get(stage, {}).get("summary") or {}).get("examples")
        per_epoch = steps_per_epoch(examples, student.batch_size) if examples else None
        steps = stats.get("steps")
        history = [
            LossPoint(
                epoch=point["epoch"],
                step=min(point["epoch"] * per_epoch, steps or math.inf) if per_epoch else None,
                loss=point["loss"],
                validation=point.get("validation"),
            )
            for point in stats.get("history", [])
        ]
        curves[name] = TrainingCurve(
            loss=loss,
            steps=steps,
            epochs=stats.get("epochs"),
            final_loss=history[-1].loss if history else None,
            history=history,
        )
    return curves


def stage_rows(ctx: StageContext) -> dict[str, StageRow]:
    """Every stage of the pipeline: whether it ran in this invocation, was reused or does not apply."""
    rows = {}
    for stage in pipeline():
        record = ctx.records.get(stage.name, {})
        if record.get("applies") is False:
            rows[stage.name] = StageRow(status="skipped")
        elif record.get("status") == "running":  # this stage: its time so far, the report is its last step
            rows[stage.name] = StageRow(status="ran", seconds=round(ctx.elapsed(), 2))
        else:
            ran_now = record.get("invocation") == ctx.invocation
            rows[stage.name] = StageRow(status="ran" if ran_now else "reused", seconds=record.get("seconds"))
    return rows


STAGE = register(
    Stage(
        name="evaluate",
        body=run_evaluate,
        upstream=("data", "teacher", "distill", "rounds", "baseline"),
        key_fields=lambda config: key_payload(config.evaluate) or None,  # None: the key runs had before it existed
        outputs=lambda layout: (
            layout.report_json,
            layout.report_md,
            layout.report_html,
            layout.plots,
            layout.final_student / CALIBRATION_FILE,
            layout.baseline_student / CALIBRATION_FILE,
        ),
        help="Evaluate teacher and students; write report.json, report.md and report.html (with plots/).",
    )
)
