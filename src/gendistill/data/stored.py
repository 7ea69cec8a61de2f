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
    """The splits as Parquet (a missing split's file removed) and the class names in label-id order. A multi-label
    task's label column is a list of ids per row: the column's type is what tells a reader the task is multi-label."""
    label_type = pa.list_(pa.int64()) if task.multi_label else pa.int64()
    for name, split in (("train", task.train), ("test", task.test), ("validation", task.validation)):
        path = layout.split(name)
        if split is None:
            path.unlink(missing_ok=True)
            continue
        columns = {"text": pa.array(split.texts, pa.string()), "label": pa.array(split.labels, label_type)}
        write_parquet(path, pa.table(columns))
    write_json(layout.label_names, task.label_names)


def read_task(layout: RunLayout) -> TaskData:
    """The task exactly as the data stage wrote it. A split file the data stage wrote (its stats.json counts the
    rows) and that is gone now is an error: read as "no test set", a deleted test file would end the run with no
    accuracy and exit 0."""
    stats = read_json(layout.data_stats) if layout.data_stats.exists() else {}
    reload = f"reload the data with `gendistill run {layout.config} --run-dir {layout.root} --force data`"

    multi_label = False

    def split(name: str) -> LabeledSet | None:
        nonlocal multi_label
        path = layout.split(name)
        if not path.exists():
            written = stats.get(name) if isinstance(stats, dict) else None
            if name == "train" or (isinstance(written, int) and written > 0):
                rows = f"the data stage wrote {written} {name} rows there" if written else "the data stage wrote it"
                raise RunDirError(f"{path} is missing, but {rows}; the run directory is damaged: {reload}")
            return None
        table = pq.read_table(path)
        multi_label = multi_label or pa.types.is_list(table.schema.field("label").type)
        return LabeledSet(table.column("text").to_pylist(), table.column("label").to_pylist())

    train, test, validation = split("train"), split("test"), split("validation")
    return TaskData(train, test, validation, read_json(layout.label_names), multi_label=multi_label)
