"""Stage `rounds`: spend the teacher's labels where the student is still unsure (agreement rounds).

After the one-shot student (stage `distill`), each round:
1. draws `candidates` new texts from the pool source (the retrieve source's next neighbours, new samples of a
   `generate` or `llm` source, more of a file); from the second round on the source is shown the texts the last
   round picked, as the labeled examples of their teacher class, so an `llm` source writes more texts like them
   and a `retrieve` source looks around them;
2. the current student scores these and every earlier round's unpicked candidates, and picks `per_round`
   (students/selection.py);
3. the teacher labels only those;
4. the student continues from its weights (its vocabulary grown to the new texts) on everything labeled so far.
The student's agreement with the teacher on `holdout` pool texts the teacher labeled once (never the test set)
decides when to stop (no rise of `min_gain` for `patience` rounds) and which round's student the run keeps.

Every step writes its result atomically before the next starts, and a round is finished when its round.json
exists: a run killed mid-round repeats only the step it lost, and the teacher never labels a text twice (a
served LLM's answers are cached besides).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gendistill import progress
from gendistill.config import RunConfig, Selection
from gendistill.data.task import LabeledSet, TaskData
from gendistill.errors import ConfigError, YieldError
from gendistill.io import read_json, remove_path, write_json, write_parquet
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register
from gendistill.pipeline.layout import RunLayout
from gendistill.sources.base import (
    SourceConfig,
    SourceContext,
    SourceSummary,
    TextFilter,
    check_transfer_shards,
    list_shards,
    normalize,
    read_shard,
    transfer_shards,
)
from gendistill.stages.distill import ChunkTexts, student_init, validation_set
from gendistill.stages.label import check_label_files, soft_label_chunks
from gendistill.students.building import grow_student
from gendistill.students.classifier import StudentClassifier
from gendistill.students.example_store import Chunk, ExampleStore
from gendistill.students.selection import pick, power_ranks, uncertainty
from gendistill.students.trainer import train_student
from gendistill.training.budget import steps_for_epochs
from gendistill.training.checkpoint import kill_point

ROUND_FILE = "round.json"  # written last: a round folder without it is unfinished
POOL_INDEX = 100  # the pool source's index in its shards' seeds: round r samples as source 100 + r
USAGE_KEYS = ("requests", "retries", "failed", "cached", "prompt_tokens", "completion_tokens")


def run_rounds(ctx: StageContext) -> dict[str, Any]:
    config, layout = ctx.config, ctx.layout
    settings = config.rounds
    check_label_files(layout)
    check_transfer_shards(layout)
    task = ctx.task()
    teacher = config.teacher.load(layout.teacher, ctx.device)
    root = layout.rounds
    root.mkdir(parents=True, exist_ok=True)
    text_filter = TextFilter(config.transfer.filters, {normalize(t) for t in task.train.texts})
    for shard in transfer_shards(layout.transfer):  # the pool never offers a text the student already learnt from
        text_filter.remember(read_shard(shard)[0])
    holdout_texts, holdout_labels, holdout_record = _holdout(ctx, task, teacher, text_filter)
    ledger = [_first_round(ctx, holdout_texts, holdout_labels, holdout_record)]
    best, stall, stopped = ledger[0], 0, f"ran all {settings.count} rounds"
    for number in range(1, settings.count + 1):
        record = _round(ctx, number, task, teacher, text_filter, holdout_texts, holdout_labels, ledger)
        ledger.append(record)
        progress.log(
            f"rounds: round {number}: agreement {100 * record['agreement']:.2f}% on {len(holdout_texts)} held-out "
            f"teacher labels, {record['labels']} teacher labels spent"
        )
        if record["agreement"] >= best["agreement"] + settings.min_gain:
            best, stall = record, 0
        else:
            stall += 1
        if stall >= settings.patience:
            stopped = (
                f"stopped after round {number}: held-out agreement did not rise by {settings.min_gain:g} for "
                f"{settings.patience} round(s)"
            )
            break
    _keep_student(layout, best["round"])
    totals = _totals(ledger)
    result = {
        "rounds": len(ledger) - 1,
        "chosen_round": best["round"],
        "agreement": best["agreement"],
        "stopped": stopped,
        "select": Selection(settings.select).value,
        "holdout": len(holdout_texts),
        **totals,
    }
    write_json(layout.rounds_ledger, {**result, "history": ledger})
    progress.log(f"rounds: {stopped}; keeping round {best['round']}'s student ({100 * best['agreement']:.2f}%)")
    return result


# ---- the held-out slice ---------------------------------------------------------------------------------------
def _holdout(
    ctx: StageContext, task: TaskData, teacher: Any, text_filter: TextFilter
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """`holdout` pool texts and the teacher's labels of them: drawn once, before any round, from the pool as the
    first round sees it, so agreement on them measures what the rounds are for."""
    root, settings = ctx.layout.rounds, ctx.config.rounds
    path, record_path = root / "holdout.parquet", root / "holdout.json"
    if not path.exists():
        summary = _draw(ctx, task, text_filter, root / "holdout-pool", 0, settings.holdout)
        texts = _pool_texts(root / "holdout-pool")
        if len(texts) < 20:
            raise ConfigError(
                f"rounds.holdout: the pool source gave only {len(texts)} texts for the held-out slice (at least 20 "
                "are needed to measure agreement); check rounds.pool (or transfer.sources[0]) and its filters"
            )
        before = _usage(teacher)
        logits = teacher.logits(texts, ctx.config.teacher.label_batch_size)
        write_json(record_path, {"labels": len(texts), "teacher_usage": _spent(before, teacher), "pool": summary})
        _write_labels(path, texts, logits)
        kill_point("rounds.holdout")
    table = pq.read_table(path)
    texts = table.column("text").to_pylist()
    text_filter.remember(texts)
    labels = np.stack(table.column("logits").to_numpy(zero_copy_only=False)).argmax(axis=1)
    return texts, labels, read_json(record_path)


def _first_round(ctx: StageContext, texts: list[str], labels: np.ndarray, holdout: dict[str, Any]) -> dict[str, Any]:
    """Round 0: the one-shot student, with what its transfer set and the held-out slice cost."""
    labeled = ctx.records.get("label", {}).get("summary", {})
    transfer = labeled.get("transfer_labeled", 0) + labeled.get("transfer_reused", 0)
    student = StudentClassifier.from_pretrained(ctx.layout.student)
    return {
        "round": 0,
        "picked": 0,
        "labels": transfer + holdout["labels"],
        "teacher_usage": holdout["teacher_usage"],
        "pool_usage": _pool_usage(holdout["pool"]),
        "agreement": _agreement(student, texts, labels),
    }


# ---- one round ------------------------------------------------------------------------------------------------
def _round(
    ctx: StageContext,
    number: int,
    task: TaskData,
    teacher: Any,
    text_filter: TextFilter,
    holdout_texts: list[str],
    holdout_labels: np.ndarray,
    ledger: list[dict[str, Any]],
) -> dict[str, Any]:
    layout, settings = ctx.layout, ctx.config.rounds
    folder = _round_dir(layout, number)
    if (folder / ROUND_FILE).exists():
        record = read_json(folder / ROUND_FILE)
        text_filter.remember(_pool_texts(folder / "pool"))
        return record
    previous = StudentClassifier.from_pretrained(round_student(layout, number - 1))
    examples = task if number == 1 else _picked_task(task, layout, number - 1)
    pool_summary = _draw(ctx, examples, text_filter, folder / "pool", number, settings.candidates)
    picked_path = folder / "picked.parquet"
    if not picked_path.exists():
        candidates = _unpicked(layout, number)
        select = Selection(settings.select).value  # an Enum by default, a string when read from YAML
        scores, predicted = uncertainty(
            previous, candidates, select, committee=settings.committee, seed=ctx.config.seed + number
        )
        keys = scores
        if settings.sampling == "power":
            keys = power_ranks(scores, settings.power, np.random.default_rng(ctx.config.seed + number))
        chosen = pick(keys, predicted, settings.per_round, balance=settings.balance)
        columns = {
            "text": pa.array([candidates[i] for i in chosen], pa.string()),
            "score": pa.array(scores[chosen].astype(np.float64)),
            "student_label": pa.array(predicted[chosen].astype(np.int64)),
        }
        write_parquet(picked_path, pa.table(columns))
        kill_point("rounds.picked")
    labels_path = folder / "labels.parquet"
    if not labels_path.exists():
        texts = pq.read_table(picked_path, columns=["text"]).column("text").to_pylist()
        before = _usage(teacher)
        logits = teacher.logits(texts, ctx.config.teacher.label_batch_size)
        write_json(folder / "usage.json", {"teacher_usage": _spent(before, teacher)})
        _write_labels(labels_path, texts, logits)
        kill_point("rounds.labeled")
    student = _train(ctx, previous, number, folder)
    picked = pq.read_metadata(labels_path).num_rows
    record = {
        "round": number,
        "picked": picked,
        "labels": ledger[-1]["labels"] + picked,
        "teacher_usage": read_json(folder / "usage.json")["teacher_usage"],
        "pool_usage": _pool_usage(pool_summary),
        "candidates": len(_pool_texts(folder / "pool")),
        "agreement": _agreement(student, holdout_texts, holdout_labels),
        "picked_agreement": _picked_agreement(previous, folder),
    }
    write_json(folder / ROUND_FILE, record)
    kill_point("rounds.round")
    return record


def _train(ctx: StageContext, previous: StudentClassifier, number: int, folder: Path) -> StudentClassifier:
    """Continue from `previous` on the labeled texts, the transfer set and every round's picks so far."""
    out = folder / "student"
    if (out / "training.json").exists():
        return StudentClassifier.from_pretrained(out)
    layout, config = ctx.layout, ctx.config

    def chunks() -> Iterator[Chunk]:
        yield from soft_label_chunks(layout)
        yield from _picked_chunks(layout, number)

    # the temperature the distill stage chose (student.choose_temperature), if it chose one
    student_config = config.student.model_copy(
        update={"temperature": previous.info.get("distill_temperature", config.student.temperature)}
    )
    student = grow_student(previous, student_config, ChunkTexts(chunks), seed=config.seed + number, **student_init(ctx))
    store_dir = layout.checkpoints("rounds") / f"round-{number:02d}-examples"
    ExampleStore.build(store_dir, chunks(), student.tokenizer.encode, len(student.label_names))
    examples = ExampleStore(store_dir)
    stats = train_student(
        student,
        examples,
        student_config,
        ctx.accelerator,
        seed=config.seed + number,
        steps=steps_for_epochs(config.rounds.epochs, len(examples), config.student.batch_size),
        validation=validation_set(ctx),
        description=f"round {number}",
        checkpoint_dir=layout.checkpoints("rounds") / f"round-{number:02d}",
    )
    student.info.update(kind="student", round=number)
    student.save_pretrained(out)
    write_json(out / "training.json", stats)  # last: the student is complete
    for path in (store_dir, layout.checkpoints("rounds") / f"round-{number:02d}"):
        remove_path(path)
    return student


# ---- the pool ------------------------------------------------------------------------------------------------
def _draw(
    ctx: StageContext, task: TaskData, text_filter: TextFilter, directory: Path, number: int, n: int
) -> dict[str, Any]:
    """Build the pool source into `directory` with `n` texts (resumes shard by shard like the transfer stage);
    returns its summary."""
    record = directory / "summary.json"
    if record.exists():
        text_filter.remember(_pool_texts(directory))
        return read_json(record)
    source: SourceConfig = ctx.config.rounds.pool_source(ctx.config.transfer).model_copy(update={"n": n})
    directory.mkdir(parents=True, exist_ok=True)
    source_ctx = SourceContext(
        ctx.config, ctx.layout, task, POOL_INDEX + number, directory, text_filter, ctx.device, ctx
    )
    try:
        summary: SourceSummary = source.build(source_ctx)
    except YieldError as error:  # its `min_yield`: named as the pool it is, not by its index in the shards' seeds
        where = f"rounds.pool ({source.type}) in round {number}"
        raise YieldError(str(error).replace(source.where(source_ctx.index), where, 1)) from None
    if summary.note:
        progress.warning(f"rounds.pool ({source.type}), round {number}: {summary.note}")
    result = summary.to_dict()
    write_json(record, result)
    return result


def _pool_texts(directory: Path) -> list[str]:
    return [text for shard in list_shards(directory) for text in read_shard(shard)[0]]


def _unpicked(layout: RunLayout, number: int) -> list[str]:
    """This round's new candidates and every earlier round's that no round picked: the student, changed since,
    scores them again."""
    picked = {text for r in range(1, number) for text in _picked_texts(layout, r)}
    pool = [text for r in range(1, number + 1) for text in _pool_texts(_round_dir(layout, r) / "pool")]
    return [text for text in dict.fromkeys(pool) if text not in picked]


def _picked_texts(layout: RunLayout, number: int) -> list[str]:
    path = _round_dir(layout, number) / "picked.parquet"
    return pq.read_table(path, columns=["text"]).column("text").to_pylist() if path.exists() else []


def _picked_task(task: TaskData, layout: RunLayout, number: int) -> TaskData:
    """The task a round's pool source sees: round `number`'s picks as the labeled texts of their teacher class (a
    class the round picked nothing of keeps its own labeled texts); validation and test stay, so a source never
    keeps a copy of them."""
    table = pq.read_table(_round_dir(layout, number) / "labels.parquet")
    texts = table.column("text").to_pylist()
    labels = np.stack(table.column("logits").to_numpy(zero_copy_only=False)).argmax(axis=1).tolist()
    covered = set(labels)
    for text, label in zip(task.train.texts, task.train.labels, strict=True):
        if label not in covered:
            texts.append(text)
            labels.append(label)
    return TaskData(
        train=LabeledSet(texts, labels),
        test=task.test,
        validation=task.validation,
        label_names=task.label_names,
    )


def _picked_chunks(layout: RunLayout, number: int) -> Iterable[Chunk]:
    for r in range(1, number + 1):
        table = pq.read_table(_round_dir(layout, r) / "labels.parquet")
        if table.num_rows:
            logits = np.stack(table.column("logits").to_numpy(zero_copy_only=False)).astype(np.float32)
            yield table.column("text").to_pylist(), logits, [-1] * table.num_rows


# ---- measures and files --------------------------------------------------------------------------------------
def _agreement(student: StudentClassifier, texts: list[str], labels: np.ndarray) -> float:
    return round(float(np.mean(student.logits(texts, 256).argmax(axis=1) == labels)), 6)


def _picked_agreement(previous: StudentClassifier, folder: Path) -> float | None:
    """How often the student that picked a round's texts agreed with the teacher's labels of them: low means the
    picks found its mistakes."""
    table = pq.read_table(folder / "labels.parquet")
    if not table.num_rows:
        return None
    teacher = np.stack(table.column("logits").to_numpy(zero_copy_only=False)).argmax(axis=1)
    return _agreement(previous, table.column("text").to_pylist(), teacher)


def _write_labels(path: Path, texts: list[str], logits: np.ndarray) -> None:
    if not np.isfinite(logits).all():
        raise ConfigError(f"rounds: the teacher's logits for {path.name} are not finite (NaN or infinity)")
    table = pa.table({"text": pa.array(texts, pa.string()), "logits": pa.array(list(logits), pa.list_(pa.float32()))})
    write_parquet(path, table)


def _usage(teacher: Any) -> dict[str, float]:
    described = teacher.describe()
    return {key: described.get(key) or 0 for key in USAGE_KEYS if key in described}


def _spent(before: dict[str, float], teacher: Any) -> dict[str, float]:
    """What the teacher's requests and tokens grew by since `before` (empty for a local teacher)."""
    after = _usage(teacher)
    return {key: after[key] - before.get(key, 0) for key in after}


def _pool_usage(summary: dict[str, Any]) -> dict[str, float]:
    """An `llm` pool's requests and tokens, from its summary's details (empty for other sources)."""
    details = summary.get("details") or {}
    return {key: details[key] for key in USAGE_KEYS if isinstance(details.get(key), (int, float))}


def _totals(ledger: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {"labels": ledger[-1]["labels"], "picked": sum(r["picked"] for r in ledger)}
    for kind in ("teacher_usage", "pool_usage"):
        summed: dict[str, float] = {}
        for record in ledger:
            for key, value in (record.get(kind) or {}).items():
                summed[key] = summed.get(key, 0) + value
        if summed:
            totals[kind] = summed
    return totals


def _round_dir(layout: RunLayout, number: int) -> Path:
    return layout.rounds / f"round-{number:02d}"


def round_student(layout: RunLayout, number: int) -> Path:
    """Round `number`'s student folder (round 0: the one-shot student of stage `distill`)."""
    return layout.student if number == 0 else _round_dir(layout, number) / "student"


def _keep_student(layout: RunLayout, number: int) -> None:
    """Copy the chosen round's student to rounds/student, whole or not at all (a temporary copy renamed)."""
    target = layout.rounds_student
    staging = target.with_name(f"{target.name}.tmp")
    remove_path(staging)
    shutil.copytree(round_student(layout, number), staging)
    remove_path(target)
    os.replace(staging, target)


# ---- the stage -----------------------------------------------------------------------------------------------
def rounds_key(config: RunConfig) -> dict[str, Any]:
    """The rounds section, the pool it draws from (the first transfer source by default) and what that source
    depends on outside its fields; the student and teacher enter through the upstream stages' keys."""
    pool = config.rounds.pool_source(config.transfer)
    return {
        "rounds": config.rounds,
        "pool": pool,
        "pool_outside_fields": pool.key_fields(config) if pool is not None else {},
        "seed": config.seed,
    }


def _inputs(config: RunConfig) -> list[str]:
    pool = config.rounds.pool_source(config.transfer)
    return pool.inputs(config) if pool is not None else []


def _check(config: RunConfig) -> None:
    pool = config.rounds.pool_source(config.transfer)
    if pool is None:
        raise ConfigError(
            "rounds.pool: rounds need a source of candidate texts; set rounds.pool (e.g. {type: retrieve, corpus: "
            "FILE}) or add a transfer source (the first one is the default pool)"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "rounds: agreement rounds run in one process; run `gendistill run` without accelerate launch (or with "
            "rounds.count: 0)"
        )
    pool.check(config, POOL_INDEX)


STAGE = register(
    Stage(
        name="rounds",
        body=run_rounds,
        upstream=("data", "teacher", "transfer", "label", "distill"),
        key_fields=rounds_key,
        inputs=_inputs,
        check=_check,
        applies=lambda config: config.rounds.active(),
        outputs=lambda layout: (layout.rounds, layout.checkpoints("rounds")),
        help="Agreement rounds: the teacher labels the pool texts the student is least sure of; the student "
        "continues on them.",
    )
)
