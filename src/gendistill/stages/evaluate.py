"""Stage `evaluate`: teacher, student and baseline on the test set and on the CPU, measured in the same process;
writes report.json and report.md (gendistill.report). Every evaluate setting is a knob: `--force evaluate`
re-measures without retraining anything."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gendistill.io import atomic_path, read_json, stable_hash, texts_sha256
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, pipeline, register
from gendistill.report import ModelRow, Report, StageRow, TransferSet


def teacher_test_logits(ctx: StageContext, teacher: Any, texts: list[str]) -> np.ndarray:
    """The teacher's test logits, cached per (teacher, test texts) so that rerunning evaluate after a student
    change does not pay for the teacher's pass again."""
    from safetensors.numpy import load_file, save_file

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
    from gendistill.evaluate import classification_metrics, throughput, weights_size
    from gendistill.students import StudentClassifier

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

    teacher = ctx.config.teacher.load(layout.teacher, torch.device("cpu"))
    teacher_predictions = None
    metrics: dict[str, float] = {}
    if test:
        teacher_predictions = teacher_test_logits(ctx, teacher, test.texts).argmax(axis=1)
        metrics = classification_metrics(test.labels, teacher_predictions, num_labels)
    described = teacher.describe()  # after the test pass: a served LLM counts what its labeling cost
    report.notes += described.pop("notes", [])
    report.teacher = ModelRow(kind=ctx.config.teacher.kind, **described, **metrics)
    if "examples_per_s" not in described and speed_texts:  # a served LLM gives its own (timing it would re-ask)
        report.teacher.examples_per_s = throughput(
            lambda batch: teacher.logits(batch, config.batch_size), speed_texts, config.batch_size, config.threads
        )

    for name, directory in (("student", layout.student), ("baseline_student", layout.baseline_student)):
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
            row = row.model_copy(update=classification_metrics(test.labels, predictions, num_labels))
            row.teacher_agreement = float(np.mean(predictions == teacher_predictions))
        if speed_texts:
            row.examples_per_s = throughput(
                lambda batch, s=student: s.logits(batch, config.batch_size),
                speed_texts,
                config.batch_size,
                config.threads,
            )
        setattr(report, name, row)

    if layout.transfer_summary.exists():
        transfer = TransferSet.model_validate(read_json(layout.transfer_summary))
        transfer.requested = sum(s.requested or 0 for s in transfer.sources)
        transfer.generated = sum(s.generated for s in transfer.sources)
        for index, (source, row) in enumerate(zip(ctx.config.transfer.sources, transfer.sources, strict=False)):
            report.notes += source.report(layout, index, row)
        report.transfer_set = transfer
    student_row, teacher_row = report.student, report.teacher
    if student_row is not None and teacher_row.params and student_row.params:
        report.ratios = {
            "params_teacher_over_student": teacher_row.params / student_row.params,
            "size_teacher_over_student": (teacher_row.size_bytes or 0) / max(student_row.size_bytes or 1, 1),
            "speed_student_over_teacher": (student_row.examples_per_s or 0) / (teacher_row.examples_per_s or 1),
        }
    report.speed = {
        "device": "cpu",
        "threads": config.threads or torch.get_num_threads(),
        "batch_size": config.batch_size,
        "examples": len(speed_texts),
    }
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
    report.write(layout.report_json)
    return {name: row.accuracy for name, row in report.models()}


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
        upstream=("data", "teacher", "distill", "baseline"),
        outputs=lambda layout: (layout.report_json, layout.report_md),
        help="Evaluate teacher and students; write report.json and report.md.",
    )
)
