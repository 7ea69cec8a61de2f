"""Stage `label`: the teacher's logits for the labeled texts and for every transfer shard, shard by shard (a shard
labeled before an interruption is kept: the teacher is deterministic)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gendistill import progress
from gendistill.checkpoint import kill_point
from gendistill.examples_store import Chunk
from gendistill.io import read_json, texts_sha256, write_parquet
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register
from gendistill.pipeline.layout import RunLayout
from gendistill.sources.base import read_shard, transfer_shards


def run_label(ctx: StageContext) -> dict[str, Any]:
    """Runs on every process: transfer shard i is labeled by process i mod world; the main one labels the training
    texts too."""
    teacher_config = ctx.config.teacher
    teacher = teacher_config.load(ctx.layout.teacher, ctx.device)
    task = ctx.task()
    out = ctx.layout.labels

    def label(texts: list[str], path: Path, extra: dict[str, list] | None = None) -> bool:
        digest = texts_sha256(texts)
        if path.exists():
            metadata = pq.read_schema(path).metadata or {}
            if metadata.get(b"texts_sha256", b"").decode() == digest:
                return False
        logits = teacher.logits(texts, teacher_config.label_batch_size)
        if not np.isfinite(logits).all():
            from gendistill.errors import GendistillError

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
    labeled, reused = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return {"train": len(task.train), "transfer_labeled": labeled, "transfer_reused": reused}


def soft_label_chunks(layout: RunLayout, rows: int = 4096) -> Iterator[Chunk]:
    """(texts, teacher logits, gold) in chunks of at most `rows`: the labeled texts first (with their gold
    labels), then every transfer shard (gold -1). Streams: one chunk in memory at a time."""
    train = pq.read_table(layout.train_logits)
    width = len(read_json(layout.label_names))  # not the train logits' width: a zero-label start has no train rows
    yield (
        train.column("text").to_pylist(),
        _matrix(train.column("logits").combine_chunks(), width),
        train.column("label").to_pylist(),
    )
    for path in sorted(layout.labels.glob("*/shard-*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=["text", "logits"]):
            texts = batch.column("text").to_pylist()
            yield texts, _matrix(batch.column("logits"), width), [-1] * len(texts)


def _matrix(column: pa.Array, width: int) -> np.ndarray:
    return np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, width)


STAGE = register(
    Stage(
        name="label",
        body=run_label,
        upstream=("teacher", "transfer"),
        outputs=lambda layout: (layout.labels,),
        processes="all",
        help="Label the training and transfer texts with the teacher's logits.",
    )
)
