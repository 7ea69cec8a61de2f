"""Stage `evaluate`: teacher, student and baseline on the test set and on the CPU, measured in the same process;
writes report.json, report.md, report.html and plots/ (evaluation.report, evaluation.plots). Every
evaluate setting is a knob: `--force evaluate` re-measures without retraining anything."""

from __future__ import annotations

import math
import os
import statistics
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from gendistill.evaluation import plots
from gendistill.evaluation.measure import classification_metrics, per_class_metrics, timed_passes, weights_size
from gendistill.evaluation.pages import write_report
from gendistill.evaluation.report import (
    LossPoint,
    ModelRow,
    Report,
    RoundRow,
    Rounds,
    SpeedSettings,
    StageRow,
    Throughput,
    TrainingCurve,
    TransferSet,
)
from gendistill.io import atomic_path, read_json, stable_hash, texts_sha256
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, pipeline, register
from gendistill.stages.rounds import round_student
from gendistill.students.classifier import StudentClassifier
from gendistill.training.budget import steps_per_epoch


def teacher_test_logits(ctx: StageContext, teacher: Any, texts: list[str]) -> np.ndarray:
    """The teacher's test logits, cached per (teacher, test texts) so that rerunning evaluate after a student
    change does not pay for the teacher's pass again."""
    teacher_key = ctx.records.get("teacher", {}).get("key")
    path = ctx.layout.teacher_cache / f"test_logits-{stable_hash([teacher_key, texts_sha256(texts)])}.safetensors"
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

    def scored(row: ModelRow, predictions: np.ndarray) -> ModelRow:
        assert test is not None
        row = row.model_copy(update=classification_metrics(test.labels, predictions, num_labels))
        row.per_class, row.confusion_matrix = per_class_metrics(test.labels, predictions, task.label_names)
        return row

    teacher = ctx.config.teacher.load(layout.teacher, torch.device("cpu"))
    teacher_predictions = None
    if test:
        teacher_predictions = teacher_test_logits(ctx, teacher, test.texts).argmax(axis=1)
    described = teacher.describe()  # after the test pass: a served LLM counts what its labeling cost
    report.notes += described.pop("notes", [])
    report.teacher = ModelRow(kind=ctx.config.teacher.kind, **described)
    if test:
        report.teacher = scored(report.teacher, teacher_predictions)
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
        if test:
            predictions = student.logits(test.texts, config.batch_size).argmax(axis=1)
            row = scored(row, predictions)
            row.teacher_agreement = float(np.mean(predictions == teacher_predictions))
        predictors[name] = lambda batch, s=student: s.logits(batch, config.batch_size)
        students[name] = (student, directory)
        setattr(report, name, row)

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
    if not test:
        report.notes.append("no test set: accuracy and macro-F1 were not measured")
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
    return {name: row.accuracy for name, row in report.models()}


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
    finals = (("teacher", "teacher", "cross-entropy"), ("generator", "generator", "next-token cross-entropy"))
    for stage, name, loss in finals:
        record = ctx.records.get(stage, {})
        summary = record.get("summary") or {}
        if record.get("applies") is not False and summary.get("final_loss") is not None:
            curves[name] = TrainingCurve(loss=loss, steps=summary.get("steps"), final_loss=summary["final_loss"])
    student = ctx.config.student
    kind = getattr(student.loss, "value", student.loss)  # an Enum member when the config was built in Python
    distill_loss = f"{kind} to the teacher's logits (+ {student.alpha:g} x cross-entropy on labeled texts)"
    students = (
        ("student", ctx.layout.final_student, "distill", distill_loss),
        ("baseline_student", ctx.layout.baseline_student, "baseline", "cross-entropy"),
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
        outputs=lambda layout: (layout.report_json, layout.report_md, layout.report_html, layout.plots),
        help="Evaluate teacher and students; write report.json, report.md and report.html (with plots/).",
    )
)
