"""Stage `distill`: train the student on the teacher's soft labels for the labeled and transfer texts."""

from __future__ import annotations

from pathlib import Path
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


def student_inputs(config: RunConfig) -> list[str]:
    """The encoder named by `student.init_from` (its content enters the key), if the student starts from one."""
    encoder = config.student.init_encoder()
    return [encoder] if encoder and config.student.init == "teacher" else []


def check_student_init(config: RunConfig) -> None:
    """Preflight: `init: teacher` has an encoder to start from (an LLM teacher has none), and a named one loads."""
    if config.student.init != "teacher":
        return
    named = config.student.init_encoder()
    if named:
        from gendistill.hub import check_model

        check_model(named, "student.init_from encoder", getattr(config.teacher, "trust_remote_code", False))
    elif config.teacher.student_init(Path("teacher")) is None:
        raise ConfigError(_NO_ENCODER.format(kind=config.teacher.kind))


_NO_ENCODER = (
    "student.init: teacher needs an encoder, and a {kind!r} teacher has none; set student.init_from to an encoder "
    "folder or Hugging Face id (its tokenizer and static embeddings), or student.init: random"
)


def student_init(ctx: StageContext) -> dict[str, Any]:
    """make_student's teacher arguments: the tokenizer folder and base encoder for `init: teacher`: the teacher's,
    or the encoder `student.init_from` names (an LLM teacher has none of its own)."""
    named = ctx.config.student.init_encoder()
    encoder = (Path(named), named) if named else ctx.config.teacher.student_init(ctx.layout.teacher)
    if encoder is None and ctx.config.student.init == "teacher":
        raise ConfigError(_NO_ENCODER.format(kind=ctx.config.teacher.kind))
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


def fit_student(
    ctx: StageContext,
    texts: list[str],
    gold: list[int],
    teacher_logits: np.ndarray | None,
    kind: str,
    out_dir: Path,
    steps: int | None = None,
) -> dict[str, Any]:
    """Build a student over `texts`, train it (distill on `teacher_logits`, or CE on `gold` without them), save it
    to `out_dir` with its training history; returns the stage summary."""
    from gendistill.distill import make_student, train_student

    task = ctx.task()
    student = make_student(ctx.config.student, texts, task.label_names, ctx.config.seed, **student_init(ctx))
    stats = train_student(
        student,
        texts,
        gold,
        teacher_logits,
        ctx.config.student,
        ctx.accelerator,
        ctx.config.seed,
        steps=steps,
        validation=validation_set(ctx),
        description=kind.replace("_", " "),
        checkpoint_dir=ctx.layout.checkpoints(ctx.stage),
    )
    student.info.update(kind=kind)
    if ctx.is_main:
        student.save_pretrained(out_dir)
        write_json(out_dir / "training.json", stats)
    summary = {key: stats[key] for key in ("steps", "epochs", "best_validation_accuracy") if key in stats}
    return {"params": student.num_parameters, "examples": len(texts), **summary, "vocab_size": student.spec.vocab_size}


def run_distill(ctx: StageContext) -> dict[str, Any]:
    (train_texts, gold, train_logits), (transfer_texts, transfer_logits) = read_soft_labels(ctx.layout)
    return fit_student(
        ctx,
        train_texts + transfer_texts,
        gold + [-1] * len(transfer_texts),
        np.concatenate([train_logits, transfer_logits]),
        "student",
        ctx.layout.student,
    )


STAGE = register(
    Stage(
        name="distill",
        body=run_distill,
        upstream=("data", "teacher", "label"),
        key_fields=student_key,
        inputs=student_inputs,
        check=check_student_init,
        outputs=lambda layout: (layout.student, layout.checkpoints("distill")),
        every_process=True,
        help="Distill the student on the teacher's soft labels.",
    )
)
