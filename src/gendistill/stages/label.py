"""Stage `label`: the teacher's logits for the labeled texts and for every transfer shard, shard by shard (a shard
labeled before an interruption is kept: the teacher is deterministic; one found damaged is labeled again).
labels/shards.json records every label file's rows and sha256, checked by the stages that read them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gendistill import progress
from gendistill.data import curation
from gendistill.errors import GendistillError, RunDirError
from gendistill.io import parquet_damage, parquet_record, read_json, texts_sha256, write_json, write_parquet
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register
from gendistill.pipeline.layout import RunLayout
from gendistill.sources.base import check_transfer_shards, read_shard, transfer_shards
from gendistill.students.example_store import Chunk
from gendistill.training.checkpoint import kill_point


def run_label(ctx: StageContext) -> dict[str, Any]:
    """Runs on every process: transfer shard i is labeled by process i mod world; the main one labels the training
    texts too."""
    teacher_config = ctx.config.teacher
    teacher = teacher_config.load(ctx.layout.teacher, ctx.device)
    task = ctx.task()
    out = ctx.layout.labels
    check_transfer_shards(ctx.layout)

    def label(texts: list[str], path: Path, extra: dict[str, list] | None = None) -> bool:
        digest = texts_sha256(texts)
        if path.exists():
            damage = parquet_damage(path)
            if damage is None:
                metadata = pq.read_schema(path).metadata or {}
                if metadata.get(b"texts_sha256", b"").decode() == digest:
                    return False
            else:
                progress.warning(f"label file {path} {damage}: labeling its texts again")
        logits = teacher.logits(texts, teacher_config.label_batch_size)
        if not np.isfinite(logits).all():
            raise GendistillError(
                f"label: the teacher's logits for {path.name} are not finite (NaN or infinity): the teacher diverged "
                "while training; lower teacher.learning_rate and rerun with --force teacher"
            )
        columns = {
            "text": pa.array(texts, pa.string()),
            **(extra or {}),
            "logits": pa.array(list(logits), pa.list_(pa.float32())),
        }
        write_parquet(path, pa.table(columns).replace_schema_metadata({"texts_sha256": digest}))
        return True

    if ctx.is_main:
        label(task.train.texts, ctx.layout.train_logits, {"label": task.train.labels})
    shards = transfer_shards(ctx.layout.transfer)
    mine = shards[ctx.rank :: ctx.world]  # shard i on process i mod world: the same files for any world size
    labeled = reused = 0
    with progress.bar("label: transfer set", total=sum(pq.read_metadata(p).num_rows for p in mine)) as bar:
        for shard in mine:
            texts = read_shard(shard)[0]
            if label(texts, out / shard.parent.name / shard.name):
                labeled += len(texts)
            else:
                reused += len(texts)
            bar.advance(len(texts))
            progress.step(f"label: {labeled + reused} transfer texts")
            kill_point("label.shard")
    counts = ctx.gather((labeled, reused))
    ctx.barrier()
    if ctx.is_main:
        wanted = {out / shard.parent.name / shard.name for shard in shards}
        for stale in out.glob("*/shard-*.parquet"):
            if stale not in wanted:
                stale.unlink()
        _write_shard_index(ctx.layout, [ctx.layout.train_logits, *sorted(wanted)])
    labeled, reused = sum(c[0] for c in counts), sum(c[1] for c in counts)
    summary: dict[str, Any] = {"train": len(task.train), "transfer_labeled": labeled, "transfer_reused": reused}
    if ctx.is_main:
        summary.update(curate(ctx))
    return summary


SHARD_INDEX = "shards.json"  # in layout.labels: every file the label stage wrote, with its rows and sha256


def _write_shard_index(layout: RunLayout, files: list[Path]) -> None:
    index = {
        str(path.relative_to(layout.labels)): parquet_record(path, pq.read_metadata(path).num_rows) for path in files
    }
    write_json(layout.labels / SHARD_INDEX, index)


def check_label_files(layout: RunLayout) -> None:
    """Every file the label stage recorded is there, with its rows and checksum: a deleted shard would otherwise
    make the student train on fewer texts and the run say done, a truncated one end in a pyarrow traceback. (A run
    dir labeled before the index existed is trusted; one whose index has row counts only is checked for those.)"""
    index_path = layout.labels / SHARD_INDEX
    if not index_path.exists():
        return
    try:
        index: dict[str, Any] = read_json(index_path)
        if not isinstance(index, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        raise RunDirError(
            f"{index_path}: cannot be read ({str(error)[:80]}); the run directory is damaged: relabel with "
            f"`gendistill label {layout.root}`"
        ) from None
    for name, record in index.items():
        path = layout.labels / name
        problem = parquet_damage(path, record)
        if problem is not None:
            raise RunDirError(
                f"{path} {problem} (one of the {len(index)} label files the label stage recorded); the run directory "
                f"is damaged: relabel with `gendistill label {layout.root}`"
            )


def _transfer_label_files(layout: RunLayout) -> list[Path]:
    return sorted(layout.labels.glob("*/shard-*.parquet"))


def curate(ctx: StageContext) -> dict[str, Any]:
    """Apply `label.*` curation to the labeled transfer set: write the keep mask (one row per shard) that
    `soft_label_chunks` applies, and count, per class of the teacher's labels, what the student will train on."""
    config, layout = ctx.config.label, ctx.layout
    files = _transfer_label_files(layout)
    tables = [pq.read_table(path, columns=["logits"]) for path in files]
    names = read_json(layout.label_names)
    logits = (
        np.concatenate(
            [
                _matrix(t.column("logits").combine_chunks(), len(names), path, layout)
                for t, path in zip(tables, files, strict=True)
            ]
        )
        if tables
        else np.zeros((0, len(names)), np.float32)
    )
    labels = logits.argmax(axis=1)
    keep = np.ones(len(logits), dtype=bool)
    dropped: dict[str, int] = {}
    if config.near_duplicates is not None:
        texts = (text for path in files for text in pq.read_table(path, columns=["text"]).column("text").to_pylist())
        keep = curation.near_duplicate_keep(texts, config.near_duplicates, ctx.config.seed)
        dropped["near_duplicate"] = int((~keep).sum())
    if config.drop_uncertain > 0:
        before = int(keep.sum())
        keep = curation.drop_most_uncertain(logits, config.drop_uncertain, keep)
        dropped["uncertain"] = before - int(keep.sum())
    if config.rebalance is not None:
        before = int(keep.sum())
        keep = curation.rebalance(labels, config.rebalance, keep, ctx.config.seed)
        dropped["rebalance"] = before - int(keep.sum())
    mask_path = layout.labels / CURATION_FILE
    if config.active():
        sizes = [t.num_rows for t in tables]
        offsets = np.cumsum([0, *sizes])
        rows = {
            "shard": pa.array([str(path.relative_to(layout.labels)) for path in files], pa.string()),
            "keep": pa.array([keep[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]),
        }
        write_parquet(mask_path, pa.table(rows))
    elif mask_path.exists():
        mask_path.unlink()
    if ctx.task().multi_label:  # texts per label the teacher says applies (sigmoid >= 0.5: logit >= 0)
        counts = (logits[keep] >= 0).sum(axis=0)
    else:
        counts = np.bincount(labels[keep], minlength=len(names))
    return {
        "transfer_kept": int(keep.sum()),
        "transfer_dropped": dropped,
        "transfer_classes": {name: int(count) for name, count in zip(names, counts, strict=True)},
    }


CURATION_FILE = "curation.parquet"


def _keep_masks(layout: RunLayout) -> dict[Path, np.ndarray]:
    path = layout.labels / CURATION_FILE
    if not path.exists():
        return {}
    table = pq.read_table(path)
    return {
        layout.labels / shard: np.asarray(keep, dtype=bool)
        for shard, keep in zip(table.column("shard").to_pylist(), table.column("keep").to_pylist(), strict=True)
    }


def soft_label_chunks(layout: RunLayout, rows: int = 4096) -> Iterator[Chunk]:
    """(texts, teacher logits, gold) in chunks of at most `rows`: the labeled texts first (with their gold
    labels), then every transfer shard (gold -1), without the rows curation dropped. Streams: one chunk in memory
    at a time."""
    train = pq.read_table(layout.train_logits)
    width = len(read_json(layout.label_names))  # not the train logits' width: a zero-label start has no train rows
    yield (
        train.column("text").to_pylist(),
        _matrix(train.column("logits").combine_chunks(), width, layout.train_logits, layout),
        train.column("label").to_pylist(),
    )
    masks = _keep_masks(layout)
    for path in _transfer_label_files(layout):
        offset, mask = 0, masks.get(path)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=["text", "logits"]):
            texts, logits = batch.column("text").to_pylist(), _matrix(batch.column("logits"), width, path, layout)
            if mask is not None:
                keep = mask[offset : offset + len(texts)]
                offset += len(texts)
                texts, logits = [t for t, k in zip(texts, keep, strict=True) if k], logits[keep]
            if texts:
                yield texts, logits, [-1] * len(texts)


def _matrix(column: pa.Array, width: int, path: Path, layout: RunLayout) -> np.ndarray:
    """The logits of a label file as a (rows, width) matrix; NaN or infinity is refused here, naming the file: the
    label stage never writes them, so the file is damaged (training on them would diverge and blame the learning
    rate)."""
    matrix = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, width)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise RunDirError(
            f"{path}: the teacher logits of {int(bad.sum())} row(s) (first: row {int(bad.argmax()) + 1} of this read) "
            f"are NaN or infinite; the label file is damaged: relabel with `gendistill label {layout.root}`"
        )
    return matrix


STAGE = register(
    Stage(
        name="label",
        body=run_label,
        upstream=("teacher", "transfer"),
        # curation off leaves the key as it was before the options existed: no relabeling after an upgrade
        key_fields=lambda config: config.label.model_dump(mode="json") if config.label.active() else None,
        outputs=lambda layout: (layout.labels,),
        processes="all",
        help="Label the training and transfer texts with the teacher's logits.",
    )
)
