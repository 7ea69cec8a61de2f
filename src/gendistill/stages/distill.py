"""Stage `distill`: train the student on the teacher's soft labels for the labeled and transfer texts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gendistill import progress
from gendistill.config import RunConfig
from gendistill.errors import ConfigError
from gendistill.evaluation.multilabel import indicator, tune_thresholds
from gendistill.io import read_json, write_json
from gendistill.loading import (
    check_model,
    check_model_folder,
    check_tokenizer_vocabulary,
    check_weights_match_config,
)
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register
from gendistill.sections import key_payload
from gendistill.stages.label import check_label_files, soft_label_chunks
from gendistill.students.building import make_student
from gendistill.students.cross_validation import choose_epochs_by_cv
from gendistill.students.example_store import Chunk, ExampleStore
from gendistill.students.temperature_choice import choose_temperature
from gendistill.students.temperature_choice import describe as describe_temperature_choice
from gendistill.students.trainer import train_student
from gendistill.training.budget import epochs_for_steps, steps_for_epochs


def student_key(config: RunConfig) -> dict[str, Any]:
    """What a student's training depends on: the student section (minus whether a baseline is trained, its knobs and
    its options added since runs were made while they are off) and seed."""
    student = key_payload(config.student)
    student.pop("baseline")
    return {"student": student, "seed": config.seed}


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
        check_model_folder(named, config.student.allow_pickle_weights, "student")
        trust_remote_code = getattr(config.teacher, "trust_remote_code", False)
        check_model(named, "student.init_from encoder", trust_remote_code)
        check_weights_match_config(named, "student", trust_remote_code)
        check_tokenizer_vocabulary(named, "student", trust_remote_code)
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
        # the opt-in of whoever named the encoder: student.init_from's own, or the teacher's for its base model
        "allow_pickle_weights": (
            ctx.config.student.allow_pickle_weights
            if named
            else getattr(ctx.config.teacher, "allow_pickle_weights", False)
        ),
    }


def validation_set(ctx: StageContext) -> tuple[list[str], list] | None:
    task = ctx.task()
    return (task.validation.texts, task.validation.labels) if task.validation else None


class ChunkTexts:
    """The texts of `chunks()`, re-iterable (vocabulary building reads them once per pass)."""

    def __init__(self, chunks: Callable[[], Iterable[Chunk]]):
        self.chunks = chunks

    def __iter__(self) -> Iterator[str]:
        for texts, _, _ in self.chunks():
            yield from texts


def fit_student(
    ctx: StageContext,
    chunks: Callable[[], Iterable[Chunk]],
    kind: str,
    out_dir: Path,
    *,
    steps: int | None = None,
    labeled_only: bool = False,
) -> dict[str, Any]:
    """Build a student over the texts of `chunks()` ((texts, teacher logits or None, gold) triples), train it
    (distill on the logits, or CE on gold without them) and save it to `out_dir` with its training history;
    returns the stage summary. The examples are tokenized once into a memory-mapped store, so a transfer set of
    millions of texts trains in flat memory. A `labeled_only` student (a few hundred texts at most) picks its epoch
    count by cross-validation within its budget when `student.labeled_only_budget` is cv."""
    task = ctx.task()
    config = ctx.config.student
    student = make_student(config, ChunkTexts(chunks), task.label_names, ctx.config.seed, **student_init(ctx))
    student.multi_label = task.multi_label
    selection = None
    if labeled_only and config.labeled_only_budget == "cv" and task.multi_label:
        progress.log(
            f"{kind.replace('_', ' ')}: multi-label: no cross-validated epoch choice (it scores accuracy); it trains "
            "its full budget"
        )
    elif labeled_only and config.labeled_only_budget == "cv":
        texts, logits, gold = [], [], []
        for chunk_texts, chunk_logits, chunk_gold in chunks():
            texts += chunk_texts
            gold += list(chunk_gold)
            logits.append(chunk_logits)
        max_epochs = epochs_for_steps(steps, len(texts), config.batch_size) if steps else config.epochs
        teacher_logits = None if any(part is None for part in logits) else np.concatenate(logits)
        selection = choose_epochs_by_cv(
            student,
            texts,
            gold,
            teacher_logits,
            config=config,
            accelerator=ctx.accelerator,
            seed=ctx.config.seed,
            max_epochs=max_epochs,
            folds=config.cv_folds,
        )
        steps = steps_for_epochs(selection["epochs"], len(texts), config.batch_size)
        progress.log(
            f"{kind.replace('_', ' ')}: {selection['epochs']} of at most {max_epochs} epochs, chosen by "
            f"{selection['folds']}-fold cross-validation on the labeled texts"
        )
    store_dir = ctx.layout.checkpoints(f"{ctx.stage}-examples")
    if ctx.is_main:
        ExampleStore.build(
            store_dir, chunks(), student.tokenizer.encode, len(task.label_names), multi_label=task.multi_label
        )
    ctx.barrier()
    examples = ExampleStore(store_dir)
    temperature_choice = None
    if config.choose_temperature and not labeled_only and examples.has_logits:
        if task.multi_label:
            progress.log("distill: multi-label: no temperature choice (it scores single-label agreement)")
        else:
            temperature_choice = _choose_temperature(ctx, student, examples)
            config = config.model_copy(update={"temperature": temperature_choice["temperature"]})
            student.info["distill_temperature"] = config.temperature  # the rounds continue at it
    stats = train_student(
        student,
        examples,
        config,
        ctx.accelerator,
        seed=ctx.config.seed,
        steps=steps,
        validation=validation_set(ctx),
        description=kind.replace("_", " "),
        checkpoint_dir=ctx.layout.checkpoints(ctx.stage),
    )
    student.info.update(kind=kind)
    if task.multi_label:
        stats["thresholds"] = tune_student_thresholds(student, validation_set(ctx))
    if selection is not None:
        stats["epochs_by_cv"] = selection
    if temperature_choice is not None:
        stats["temperature_choice"] = temperature_choice
    if ctx.is_main:
        student.save_pretrained(out_dir)
        write_json(out_dir / "training.json", stats)
    summary = {
        key: stats[key] for key in ("steps", "epochs", "best_validation_accuracy", "temperature_choice") if key in stats
    }
    if selection is not None:
        summary["cv"] = {key: value for key, value in selection.items() if key != "curve"}
        summary["budget_steps"] = steps_for_epochs(selection["max_epochs"], len(examples), config.batch_size)
    return {
        "params": student.num_parameters,
        "examples": len(examples),
        **summary,
        "vocab_size": student.spec.vocab_size,
    }


def temperature_choice_file(layout: Any) -> Path:
    return layout.checkpoints("distill-temperature.json")


def _choose_temperature(ctx: StageContext, student: Any, examples: ExampleStore) -> dict[str, Any]:
    """The distillation temperature by `student.choose_temperature`; kept in the run dir until the stage is done, so
    a distill stage killed later (during the student's own training) resumes without training the trials again."""
    path = temperature_choice_file(ctx.layout)
    resumed = path.is_file()
    ctx.barrier()  # every process looks before the main one writes: all take the same branch (and its barriers)
    if resumed:
        choice = read_json(path)
        progress.log(f"distill: {describe_temperature_choice(choice)} (chosen before the interruption)")
        return choice
    choice = choose_temperature(
        student,
        examples,
        ctx.config.student,
        ctx.accelerator,
        seed=ctx.config.seed,
        candidates=ctx.config.student.choose_temperature or [],
    )
    if ctx.is_main:
        write_json(path, choice)
    ctx.barrier()
    return choice


def tune_student_thresholds(student: Any, validation: tuple[list[str], list] | None) -> dict[str, Any]:
    """A multi-label student's per-label decision thresholds: the F1-best ones on the validation split (held out
    from training and from the test file); without one, every label keeps 0.5 and the record says so."""
    if validation is None:
        student.thresholds = None
        return {"fitted_on": None, "values": student.decision_thresholds}
    texts, label_sets = validation
    truth = indicator(label_sets, len(student.label_names))
    student.thresholds = tune_thresholds(truth, student.predict_proba(texts))
    return {"fitted_on": "validation", "rows": len(texts), "values": student.thresholds}


def run_distill(ctx: StageContext) -> dict[str, Any]:
    """Without transfer texts the student is a labeled-only one, and picks its epochs like the baseline does."""
    labeled = ctx.records.get("label", {}).get("summary", {})
    transfer = labeled.get("transfer_kept", labeled.get("transfer_labeled", 0) + labeled.get("transfer_reused", 0))
    no_transfer = transfer == 0
    check_label_files(ctx.layout)
    return fit_student(
        ctx, lambda: soft_label_chunks(ctx.layout), "student", ctx.layout.student, labeled_only=no_transfer
    )


STAGE = register(
    Stage(
        name="distill",
        body=run_distill,
        upstream=("data", "teacher", "label"),
        key_fields=student_key,
        inputs=student_inputs,
        check=check_student_init,
        outputs=lambda layout: (
            layout.student,
            layout.checkpoints("distill"),
            layout.checkpoints("distill-examples"),
            temperature_choice_file(layout),
        ),
        processes="all",
        help="Distill the student on the teacher's soft labels.",
    )
)
