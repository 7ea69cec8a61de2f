"""Multi-label rows: a text with a set of labels (tags, co-occurring intents, emotions), read from any of the three
forms users keep them in, with one-line errors naming the row.

The forms:
- a list per row: a JSONL array, a Parquet list column, a Hugging Face Sequence feature;
- a delimited string per row (CSV/TSV): `data.label_delimiter`, e.g. "billing|refund" (an empty cell: no label);
- one 0/1 column per label: `data.label_columns` (the column names are the label names).

The policy for a row with no label: an empty list (or an empty string with a delimiter, or all 0s) means "no label
applies", a real answer in tagging tasks (a ticket about nothing the tags cover) that the student must learn to
give; a missing cell (null, NaN) is refused as today, since it more often means the row was never labeled.

Whether a task is multi-label is declared (`data.multi_label`) or detected: a label column holding lists is
multi-label. A column that mixes lists with single labels is refused, naming both rows: guessing which rows meant
"one label" would silently train on half-converted data.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from gendistill.data.labels import _show, is_blank, where
from gendistill.errors import DataError

LIST_TYPES = (list, tuple, np.ndarray)


def is_list(value: Any) -> bool:
    return isinstance(value, LIST_TYPES)


def detect(
    values: Sequence[Any],
    rows: Sequence[int],
    spec: str,
    column: str,
    declared: bool | None,
    delimiter: str | None,
    why: str | None = None,
) -> bool:
    """Whether the label column `values` (at file rows `rows`) is multi-label: True when any row holds a list or a
    delimiter is set, else `declared` (None: False). Lists mixed with single labels are refused, naming a row of
    each; so is a list where `declared` is False, and single values where `declared` is True (`why` says why
    lists were or were not expected; default: the value of data.multi_label)."""
    why = why or f"data.multi_label is {str(declared).lower()}"
    first_list = next((i for i, value in enumerate(values) if is_list(value)), None)
    if first_list is not None:
        scalar = next((i for i, value in enumerate(values) if not is_list(value) and not is_blank(value)), None)
        if scalar is not None:
            raise DataError(
                f"{where(spec, column, rows[scalar])}: label {_show(values[scalar])} is a single label but row "
                f"{rows[first_list] + 1} holds a list {_show(values[first_list])}; write every row's labels as a "
                "list (an empty list: no label applies)"
            )
        if declared is False:
            raise DataError(
                f"{where(spec, column, rows[first_list])}: label {_show(values[first_list])} is a list but "
                f"{why}; a list of labels per row is a multi-label task"
            )
        return True
    if delimiter is not None:
        return True
    if declared and len(values):
        i = next((i for i, value in enumerate(values) if not is_blank(value)), 0)
        raise DataError(
            f"{where(spec, column, rows[i])}: label {_show(values[i])} is a single value but {why}; write each "
            "row's labels as a list, set data.label_delimiter for delimited strings, or name one 0/1 column per "
            "label in data.label_columns"
        )
    return bool(declared)


def split_rows(
    values: Sequence[Any], rows: Sequence[int], spec: str, column: str, delimiter: str | None
) -> list[list[Any]]:
    """Each row's raw labels as a list (repeats within a row dropped, order kept); a missing cell or a blank
    member is an error naming the row."""
    out = []
    for row, value in zip(rows, values, strict=True):
        if is_list(value):
            members = list(value)
        elif is_blank(value) and delimiter is not None:
            members = []  # a CSV cannot tell an empty string from a missing cell: with a delimiter, both are "none"
        elif is_blank(value):
            raise DataError(
                f"{where(spec, column, row)}: no label (a missing cell); write an empty list if no label applies, "
                "or remove the row"
            )
        elif isinstance(value, str) and delimiter is not None:
            members = [part.strip() for part in value.split(delimiter)]
        else:
            members = [value]
        for member in members:
            if is_blank(member):
                raise DataError(
                    f"{where(spec, column, row)}: labels {_show(value)} hold an empty label; remove it from the row"
                )
        out.append(list(dict.fromkeys(_hashable(member, spec, column, row) for member in members)))
    return out


def _hashable(member: Any, spec: str, column: str, row: int) -> Any:
    if isinstance(member, np.generic):
        member = member.item()
    if isinstance(member, (list, tuple, dict, set, np.ndarray)):
        raise DataError(
            f"{where(spec, column, row)}: label {_show(member)} inside the row's list is itself a collection; each "
            "member is one label (an integer id or a name)"
        )
    return member


def indicator_rows(frame: pd.DataFrame, columns: list[str], spec: str) -> list[list[str]]:
    """Each row's labels from one 0/1 column per label (`data.label_columns`): the names of its columns holding 1.
    Values must be 0/1 (or booleans, or "0"/"1"): anything else names the column and row."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(
            f"{spec}: no label column {missing[0]!r} (data.label_columns; columns found: {found}); fix the name"
        )
    rows: list[list[str]] = [[] for _ in range(len(frame))]
    for column in columns:
        for row, value in enumerate(frame[column].tolist()):
            flag = _flag(value)
            if flag is None:
                raise DataError(
                    f"{where(spec, column, row)}: value {_show(value)} is not 0 or 1 (data.label_columns holds one 0/1 "
                    "column per label); fix the row"
                )
            if flag:
                rows[row].append(column)
    return rows


def _flag(value: Any) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer, float, np.floating)) and not is_blank(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return value.strip() == "1"
    return None


def sample_per_label(label_sets: list[list[int]], per_class: int, seed: int, names: list[str], spec: str) -> list[int]:
    """Indices of a low-data sample with at least `per_class` rows for every label (and `per_class` rows with no
    label, when the data has such rows), drawn with `random.Random(seed)`, in original order.

    Rows carry several labels, so an exact N per label is impossible in general; the draw is the usual greedy one:
    the rarest label first, each adding random rows holding it until it has N (rows drawn for an earlier label
    count), so frequent labels end with somewhat more than N."""
    by_label: dict[int, list[int]] = {}
    empty: list[int] = []
    for index, labels in enumerate(label_sets):
        for label in labels:
            by_label.setdefault(label, []).append(index)
        if not labels:
            empty.append(index)
    rng = random.Random(seed)
    chosen: set[int] = set()
    for label in sorted(by_label, key=lambda label: (len(by_label[label]), label)):
        members = by_label[label]
        if per_class > len(members):
            raise DataError(
                f"{spec}: data.per_class={per_class} but label {names[label]!r} has only {len(members)} row(s); lower "
                "per_class"
            )
        have = sum(index in chosen for index in members)
        for index in rng.sample(members, len(members)):
            if have >= per_class:
                break
            if index not in chosen:
                chosen.add(index)
                have += 1
    chosen.update(rng.sample(empty, min(per_class, len(empty))))
    return sorted(chosen)
