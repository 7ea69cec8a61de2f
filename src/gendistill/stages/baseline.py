"""Stage `baseline`: the same student network trained on the labeled texts alone with cross-entropy, for the
same number of optimizer steps as the distilled student (so the comparison isolates the transfer set).

Its key holds the student settings, the data and teacher (for teacher-init embeddings) and the step budget, not
the transfer set itself: a transfer change that keeps the step count does not retrain it."""

from __future__ import annotations

from typing import Any

from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register
from gendistill.stages.distill import brief, student_init, student_key, validation_set


def _step_budget(records: dict[str, dict[str, Any]]) -> int | None:
    return records.get("distill", {}).get("summary", {}).get("steps")


def run_baseline(ctx: StageContext) -> dict[str, Any]:
    from gendistill.distill import make_student, train_student

    config = ctx.config.student
    task = ctx.task()
    train_texts, gold = task.train.texts, task.train.labels
    baseline = make_student(config, train_texts, task.label_names, ctx.config.seed, **student_init(ctx))
    stats = train_student(
        baseline,
        train_texts,
        gold,
        None,
        config,
        ctx.accelerator,
        ctx.config.seed,
        steps=max(_step_budget(ctx.records) or 1, 1),
        validation=validation_set(ctx),
        description="baseline student",
        checkpoint_dir=ctx.layout.checkpoints("baseline"),
    )
    baseline.info.update(kind="baseline_student")
    if ctx.is_main:
        baseline.save_pretrained(ctx.layout.baseline_student)
    return {
        "params": baseline.num_parameters,
        "examples": len(train_texts),
        **brief(stats),
        "vocab_size": baseline.spec.vocab_size,
    }


STAGE = register(
    Stage(
        name="baseline",
        body=run_baseline,
        upstream=("data", "teacher"),
        key_fields=student_key,
        derived=lambda records: {"steps": _step_budget(records)},
        applies=lambda config: config.student.baseline,
        outputs=lambda layout: (layout.baseline_student, layout.checkpoints("baseline")),
        every_process=True,
        help="Train the baseline student (labeled data only, same network and steps).",
    )
)
