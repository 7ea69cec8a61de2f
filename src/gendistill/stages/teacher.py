"""Stage `teacher`: fit the configured teacher kind on the labeled data (fine-tune an encoder, by default)."""

from __future__ import annotations

from typing import Any

from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register


def run_teacher(ctx: StageContext) -> dict[str, Any]:
    return ctx.config.teacher.fit(ctx.fit_context(ctx.layout.teacher))


STAGE = register(
    Stage(
        name="teacher",
        body=run_teacher,
        upstream=("data",),
        key_fields=lambda config: {"teacher": config.teacher, "seed": config.seed},
        inputs=lambda config: config.teacher.inputs(),
        check=lambda config: config.teacher.check(),
        outputs=lambda layout: layout.trained_model("teacher"),
        processes="all",
        command="train-teacher",
        help="Fine-tune the teacher on the labeled data.",
    )
)
