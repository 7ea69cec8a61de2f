"""A task's labeled splits: load train/validation/test, map labels, draw the low-data sample."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gendistill.data import multilabel
from gendistill.data.labels import LabelMap, is_blank, label_names_from, preview, where
from gendistill.data.tables import clean_texts, read_column, read_table
from gendistill.errors import DataError

if TYPE_CHECKING:
    from gendistill.config import DataConfig


@dataclass
class LabeledSet:
    """Texts and their class ids: one id per text, or in a multi-label task a sorted list of ids per text (an
    empty list: no label applies)."""

    texts: list[str]
    labels: list[int] | list[list[int]]
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TaskData:
    """The labeled splits of one task, with the class names in label-id order."""

    train: LabeledSet
    test: LabeledSet | None
    validation: LabeledSet | None
    label_names: list[str]
    pool_size: int = 0
    notes: list[str] = field(default_factory=list)
    multi_label: bool = False


def _drop_duplicates(
    texts: list[str], labels: list[int], rows: list[int], spec: str
) -> tuple[list[str], list[int], list[str]]:
    """Drop repeated (text, label) rows, which would over-weight them; warn about a text given two labels."""
    seen: dict[str, int] = {}
    keep, repeated, conflicts = [], [], []
    for index, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if text in seen:
            if labels[seen[text]] == label:
                repeated.append(rows[index] + 1)
                continue
            conflicts.append(rows[index] + 1)
        else:
            seen[text] = index
        keep.append(index)
    notes = []
    if repeated:
        notes.append(
            f"{spec}: dropped {len(repeated)} duplicate row(s) (same text and label), first at row(s) "
            f"{', '.join(map(str, repeated[:5]))}"
        )
    if conflicts:
        notes.append(
            f"{spec}: {len(conflicts)} row(s) repeat a text with a different label, first at row(s) "
            f"{', '.join(map(str, conflicts[:5]))}; kept both"
        )
    return [texts[i] for i in keep], [labels[i] for i in keep], notes


def stratified_sample(labels: list[int], per_class: int, seed: int, label_names: list[str], spec: str) -> list[int]:
    """Indices of `per_class` examples per class, drawn with `random.Random(seed)`, in original order."""
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        if per_class > len(members):
            raise DataError(
                f"{spec}: data.per_class={per_class} but class {label_names[label]!r} has only {len(members)} "
                "example(s); lower per_class"
            )
        chosen.extend(rng.sample(members, per_class))
    return sorted(chosen)


@dataclass(frozen=True)
class SplitReader:
    """How a task's held-out tables are read: its columns, the longest text kept, and whether invalid rows are
    skipped (the training table's settings)."""

    text_column: str
    label_column: str
    max_chars: int
    skip_invalid_rows: bool
    multi_label: bool = False
    label_delimiter: str | None = None
    label_columns: list[str] | None = None

    def read(self, spec: str | None, role: str, label_map: LabelMap) -> LabeledSet | None:
        """The labeled `role` split (test, validation) at `spec`, its labels mapped by `label_map`; None without
        a spec."""
        if spec is None:
            return None
        frame = read_table(spec, role)
        if len(frame) == 0:
            raise DataError(f"{spec}: the {role} set is empty")
        column = read_column(frame, self.text_column, spec, "text")
        texts, rows, truncated = clean_texts(column, spec, self.max_chars, self.skip_invalid_rows)
        if self.label_columns:
            every = multilabel.indicator_rows(frame, self.label_columns, spec)
            raw_sets = [every[r] for r in rows]
            return LabeledSet(texts, _encode_sets(label_map, raw_sets, spec, rows, "data.label_columns"), truncated)
        labels = read_column(frame, self.label_column, spec, "label")
        raw = [labels.iloc[r] for r in rows]
        why = f"the training labels are {'lists' if self.multi_label else 'single labels'}"
        multilabel.detect(raw, rows, spec, self.label_column, self.multi_label, self.label_delimiter, why)
        if not self.multi_label:
            return LabeledSet(texts, label_map.encode(raw, spec, rows, self.label_column), truncated)
        raw_sets = multilabel.split_rows(raw, rows, spec, self.label_column, self.label_delimiter)
        return LabeledSet(texts, _encode_sets(label_map, raw_sets, spec, rows, self.label_column), truncated)


def _encode_sets(label_map: LabelMap, raw_sets: list[list], spec: str, rows: list[int], column: str) -> list[list[int]]:
    """Each row's raw labels as sorted class ids (the map's `encode`, which names a row with an unknown label)."""
    flat = [member for members in raw_sets for member in members]
    flat_rows = [row for row, members in zip(rows, raw_sets, strict=True) for _ in members]
    ids = iter(label_map.encode(flat, spec, flat_rows, column))
    return [sorted(next(ids) for _ in members) for members in raw_sets]


def load_task(
    train: str,
    test: str | None = None,
    validation: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    label_names: list[str] | str | None = None,
    per_class: int | None = None,
    seed: int = 0,
    max_chars: int = 2000,
    skip_invalid_rows: bool = False,
    *,
    multi_label: bool | None = None,
    label_delimiter: str | None = None,
    label_columns: list[str] | None = None,
) -> TaskData:
    """Load and validate the labeled splits of a task: single-label, or multi-label (declared by `multi_label`,
    or detected: lists in the label column, a `label_delimiter`, or `label_columns`; see `data.multilabel`)."""
    notes: list[str] = []
    frame = read_table(train, "train")
    if len(frame) == 0:
        raise DataError(f"{train}: the training set is empty")
    texts_col = read_column(frame, text_column, train, "text")
    texts, rows, truncated = clean_texts(texts_col, train, max_chars, skip_invalid_rows)
    if len(texts) < len(frame):
        notes.append(f"skipped {len(frame) - len(texts)} invalid training row(s)")
    declared = label_names_from(label_names, train)
    if label_columns:
        if multi_label is False:
            raise DataError(
                "data.label_columns names one 0/1 column per label, a multi-label form, but "
                "data.multi_label is false; remove one of them"
            )
        every = multilabel.indicator_rows(frame, label_columns, train)
        raw_sets: list[list] | None = [every[row] for row in rows]
        column, class_names = "data.label_columns", None
        declared = declared or (list(label_columns), "data.label_columns")
    else:
        labels_col = read_column(frame, label_column, train, "label")
        raw = [labels_col.iloc[row] for row in rows]
        column, class_names = label_column, frame.attrs.get("class_names", {}).get(label_column)
        if multilabel.detect(raw, rows, train, label_column, multi_label, label_delimiter):
            raw_sets = multilabel.split_rows(raw, rows, train, label_column, label_delimiter)
        else:
            raw_sets = None
            missing = [row for row, value in zip(rows, raw, strict=True) if is_blank(value)]
            if missing:
                raise DataError(
                    f"{where(train, label_column, missing[0])}: no label ({len(missing)} row(s) without one); fill "
                    "them in or remove those rows"
                )
    if raw_sets is not None:
        flat = [member for members in raw_sets for member in members]
        flat_rows = [row for row, members in zip(rows, raw_sets, strict=True) for _ in members]
    else:
        flat, flat_rows = raw, rows
    label_map = LabelMap(
        flat,
        declared[0] if declared else None,
        train,
        class_names,
        rows=flat_rows,
        column=column,
        names_source=declared[1] if declared else None,
    )
    if raw_sets is not None:
        ids = iter(label_map.train_ids)
        labels: list = [sorted(next(ids) for _ in members) for members in raw_sets]
        used = {label for members in labels for label in members}
    else:
        labels = label_map.train_ids
        used = set(labels)
    if len(used) < 2:
        kind = "label" if raw_sets is not None else "class"
        raise DataError(
            f"{train}: only one {kind} ({label_map.names[min(used)]!r}) in the training labels; a classifier needs "
            "at least two"
        )
    texts, labels, duplicate_notes = _drop_duplicates(texts, labels, rows, train)
    notes += duplicate_notes
    pool_size = len(texts)
    if per_class is not None:
        if raw_sets is not None:
            keep = multilabel.sample_per_label(labels, per_class, seed, label_map.names, train)
        else:
            keep = stratified_sample(labels, per_class, seed, label_map.names, train)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    train_set = LabeledSet(texts, labels, truncated)
    if test is None and train.startswith("hf:") and "@" not in train:
        test = train
    splits = SplitReader(
        text_column, label_column, max_chars, skip_invalid_rows, raw_sets is not None, label_delimiter, label_columns
    )
    return TaskData(
        train=train_set,
        test=splits.read(test, "test", label_map),
        validation=splits.read(validation, "validation", label_map),
        label_names=label_map.names,
        pool_size=pool_size,
        notes=notes,
        multi_label=raw_sets is not None,
    )


def load_named_classes(
    label_names: list[str] | str,
    test: str | None = None,
    validation: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    max_chars: int = 2000,
    skip_invalid_rows: bool = False,
) -> TaskData:
    """A zero-label start: no labeled training texts, only the class names (test and validation sets, if given,
    are labeled by those names or by integer ids into them)."""
    declared = label_names_from(label_names, "")
    assert declared is not None  # label_names is given: the config requires it without data.train
    names, source = declared
    label_map = LabelMap.from_names(names, source, label_column)
    if len(label_map.names) < 2:
        raise DataError(f"{source}: only one class ({label_map.names[0]!r}); a classifier needs at least two")
    splits = SplitReader(text_column, label_column, max_chars, skip_invalid_rows)
    return TaskData(
        train=LabeledSet([], []),
        test=splits.read(test, "test", label_map),
        validation=splits.read(validation, "validation", label_map),
        label_names=label_map.names,
        notes=[],
    )


def load_task_from_config(data: DataConfig) -> TaskData:
    """`load_task` with the fields of the config's `data` section (`load_named_classes` without data.train)."""
    if data.train is None:
        assert data.label_names is not None
        task = load_named_classes(
            data.label_names,
            data.test,
            data.validation,
            data.text_column,
            data.label_column,
            data.max_chars,
            data.skip_invalid_rows,
        )
    else:
        task = _load_task_from(data)
    unknown = [name for name in data.label_descriptions or {} if name not in task.label_names]
    if unknown:
        raise DataError(
            f"data.label_descriptions: {unknown[0]!r} is not a class name (classes: {preview(task.label_names)})"
        )
    return task


def _load_task_from(data: DataConfig) -> TaskData:
    assert data.train is not None
    return load_task(
        data.train,
        data.test,
        data.validation,
        data.text_column,
        data.label_column,
        data.label_names,
        data.per_class,
        data.seed,
        data.max_chars,
        data.skip_invalid_rows,
        multi_label=data.multi_label,
        label_delimiter=data.label_delimiter,
        label_columns=data.label_columns,
    )
