"""Stage `label`: the teacher's logits for the labeled texts and for every transfer shard, shard by shard (a shard
labeled before an interruption is kept: the teacher is deterministic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gendistill import progress
from gendistill.checkpoint import kill_point
from gendistill.io import read_json, texts_sha256, write_parquet
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register
from gendistill.pipeline.layout import RunLayout
from gendistill.sources.base import read_transfer_set


def run_label(ctx: StageContext) -> dict[str, Any]:
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

    label(task.train.texts, ctx.layout.train_logits, {"label": task.train.labels})
    shards = read_transfer_set(ctx.layout.transfer)
    wanted = set()
    labeled = reused = 0
    with progress.bar("label: transfer set", total=sum(len(t) for _, t in shards)) as bar:
        for shard, texts in shards:
            target = out / shard.parent.name / shard.name
            wanted.add(target)
            if label(texts, target):
                labeled += len(texts)
            else:
                reused += len(texts)
            bar.advance(len(texts))
            progress.step(f"label: {labeled + reused} transfer texts")
            kill_point("label.shard")
    for stale in out.glob("*/shard-*.parquet"):
        if stale not in wanted:
            stale.unlink()
    return {"train": len(task.train), "transfer_labeled": labeled, "transfer_reused": reused}


def read_soft_labels(
    layout: RunLayout,
) -> tuple[tuple[list[str], list[int], np.ndarray], tuple[list[str], np.ndarray]]:
    """((train texts, gold, teacher logits), (transfer texts, teacher logits)) as the label stage wrote them."""
    train = pq.read_table(layout.train_logits)
    train_logits = np.asarray(train.column("logits").to_pylist(), dtype=np.float32)
    texts: list[str] = []
    logits: list[list[float]] = []
    for path in sorted(layout.labels.glob("*/shard-*.parquet")):
        table = pq.read_table(path)
        texts += table.column("text").to_pylist()
        logits += table.column("logits").to_pylist()
    labels = len(read_json(layout.label_names))  # not train_logits' width: a zero-label start has no train rows
    train_logits = train_logits.reshape(len(train), labels)
    transfer_logits = np.asarray(logits, dtype=np.float32).reshape(len(texts), labels)
    return (
        (train.column("text").to_pylist(), train.column("label").to_pylist(), train_logits),
        (texts, transfer_logits),
    )


STAGE = register(
    Stage(
        name="label",
        body=run_label,
        upstream=("teacher", "transfer"),
        outputs=lambda layout: (layout.labels,),
        help="Label the training and transfer texts with the teacher's logits.",
    )
)
