"""Stage `baseline`: the same student network trained on the labeled texts alone with cross-entropy, within the
step budget of the distilled student: by default it picks its epoch count inside that budget by cross-validation
on the labeled texts (`student.labeled_only_budget: cv`), so it is neither starved nor overtrained.

Its key holds the student settings, the data and teacher (for teacher-init embeddings) and the step budget, not
the transfer set itself: a transfer change that keeps the step count does not retrain it."""

from __future__ import annotations

from typing import Any

from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register
from gendistill.stages.distill import fit_student, student_inputs, student_key


def _step_budget(records: dict[str, dict[str, Any]]) -> int | None:
    """The distilled student's steps, or, where it chose fewer by cross-validation, the budget it chose within."""
    summary = records.get("distill", {}).get("summary", {})
    return summary.get("budget_steps", summary.get("steps"))


def run_baseline(ctx: StageContext) -> dict[str, Any]:
    train = ctx.task().train
    steps = max(_step_budget(ctx.records) or 1, 1)
    chunks = lambda: [(train.texts, None, train.labels)]  # noqa: E731
    return fit_student(ctx, chunks, "baseline_student", ctx.layout.baseline_student, steps=steps, labeled_only=True)


STAGE = register(
    Stage(
        name="baseline",
        body=run_baseline,
        upstream=("data", "teacher"),
        key_fields=student_key,
        derived=lambda records: {"steps": _step_budget(records)},
        applies=lambda config: config.student.baseline and not config.data.zero_label,  # no labels: no baseline
        inputs=student_inputs,
        outputs=lambda layout: (
            layout.baseline_student,
            layout.checkpoints("baseline"),
            layout.checkpoints("baseline-examples"),
        ),
        processes="all",
        help="Train the baseline student (labeled data only, same network and steps).",
    )
)
