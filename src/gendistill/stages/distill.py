"""Stage `distill`: train the student on the teacher's soft labels for the labeled and transfer texts."""

from __future__ import annotations

from typing import Any

import numpy as np

from gendistill.config import RunConfig
from gendistill.errors import ConfigError
from gendistill.io import write_json
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register
from gendistill.stages.label import read_soft_labels


def student_key(config: RunConfig) -> dict[str, Any]:
    """What a student's training depends on: the student section (minus whether a baseline is trained) and seed."""
    return {"student": config.student.model_dump(mode="json", exclude={"baseline"}), "seed": config.seed}


def student_init(ctx: StageContext) -> dict[str, Any]:
    """make_student's teacher arguments: the teacher's tokenizer folder and base encoder for `init: teacher`."""
    encoder = ctx.config.teacher.student_init(ctx.layout.teacher)
    if encoder is None and ctx.config.student.init == "teacher":
        raise ConfigError(
            f"student.init: teacher needs an encoder, and a {ctx.config.teacher.kind!r} teacher has none; "
            "set student.init: random"
        )
    teacher_dir, base = encoder if encoder else (None, None)
    return {
        "teacher_dir": teacher_dir,
        "teacher_base": base,
        "device": str(ctx.device),
        "trust_remote_code": getattr(ctx.config.teacher, "trust_remote_code", False),
    }


def validation_set(ctx: StageContext) -> tuple[list[str], list[int]] | None:
    task = ctx.task()
    return (task.validation.texts, task.validation.labels) if task.validation else None


def brief(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in ("steps", "epochs", "best_validation_accuracy") if key in stats}


def run_distill(ctx: StageContext) -> dict[str, Any]:
    from gendistill.distill import make_student, train_student

    config = ctx.config.student
    task = ctx.task()
    (train_texts, gold, train_logits), (transfer_texts, transfer_logits) = read_soft_labels(ctx.layout)
    texts = train_texts + transfer_texts
    student = make_student(config, texts, task.label_names, ctx.config.seed, **student_init(ctx))
    stats = train_student(
        student,
        texts,
        gold + [-1] * len(transfer_texts),
        np.concatenate([train_logits, transfer_logits]),
        config,
        ctx.accelerator,
        ctx.config.seed,
        validation=validation_set(ctx),
        description="student",
        checkpoint_dir=ctx.layout.checkpoints("distill"),
    )
    student.info.update(kind="student")
    if ctx.is_main:
        student.save_pretrained(ctx.layout.student)
        write_json(ctx.layout.student / "training.json", stats)
    return {
        "params": student.num_parameters,
        "examples": len(texts),
        **brief(stats),
        "vocab_size": student.spec.vocab_size,
    }


STAGE = register(
    Stage(
        name="distill",
        body=run_distill,
        upstream=("data", "teacher", "label"),
        key_fields=student_key,
        outputs=lambda layout: (layout.student, layout.checkpoints("distill")),
        every_process=True,
        help="Distill the student on the teacher's soft labels.",
    )
)
