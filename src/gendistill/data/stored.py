"""The task as a run stores it: the data stage writes the labeled splits and class names into the run directory,
every later stage (and the engine's `StageContext.task`) reads them back from there, never from the user's files."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from gendistill.data.task import LabeledSet, TaskData
from gendistill.errors import RunDirError
from gendistill.io import read_json, write_json, write_parquet

if TYPE_CHECKING:
    from gendistill.pipeline.layout import RunLayout


def write_task(layout: RunLayout, task: TaskData) -> None:
    """The splits as Parquet (a missing split's file removed) and the class names in label-id order."""
    for name, split in (("train", task.train), ("test", task.test), ("validation", task.validation)):
        path = layout.split(name)
        if split is None:
            path.unlink(missing_ok=True)
            continue
        columns = {"text": pa.array(split.texts, pa.string()), "label": pa.array(split.labels, pa.int64())}
        write_parquet(path, pa.table(columns))
    write_json(layout.label_names, task.label_names)


def read_task(layout: RunLayout) -> TaskData:
    """The task exactly as the data stage wrote it."""

    def split(name: str) -> LabeledSet | None:
        path = layout.split(name)
        if not path.exists():
            return None
        table = pq.read_table(path)
        return LabeledSet(table.column("text").to_pylist(), table.column("label").to_pylist())

    train = split("train")
    if train is None:
        raise RunDirError(f"{layout.split('train')} is missing; rerun the data stage (gendistill run)")
    return TaskData(train, split("test"), split("validation"), read_json(layout.label_names))
