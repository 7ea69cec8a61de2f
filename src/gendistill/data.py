"""Load labeled and unlabeled text data (CSV/TSV/JSONL/Parquet/`hf:`), map labels, draw low-data samples.

Every problem a user's file can have is reported as a one-line `DataError` naming the file, row or column.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from gendistill.errors import DataError

if TYPE_CHECKING:
    from gendistill.config import DataConfig

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class LabeledSet:
    texts: list[str]
    labels: list[int]
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


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{path}: line {line_no} is not valid UTF-8 (byte {error.start}); re-save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {line_no} is not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {line_no} is not a JSON object")
            rows.append(row)
    return pd.DataFrame(rows)


def _check_utf8(path: Path) -> None:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 (byte offset {error.start}); re-save the file as UTF-8"
        ) from None


def _read_hf(spec: str, role: str) -> pd.DataFrame:
    body = spec.removeprefix("hf:")
    body, _, split = body.partition("@")
    name, _, config = body.partition(":")
    try:
        import datasets

        dataset = datasets.load_dataset(name, config or None, split=split or role)
    except Exception as error:  # noqa: BLE001 - the datasets library raises many types for "not reachable"
        raise DataError(
            f"{spec}: cannot load Hugging Face dataset {name!r} split {split or role!r} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); offline, export it to JSONL/Parquet and pass the path"
        ) from None
    frame = dataset.to_pandas()
    features = getattr(dataset, "features", {}) or {}
    frame.attrs["class_names"] = {
        column: list(feature.names) for column, feature in features.items() if hasattr(feature, "names")
    }
    return frame


def read_table(spec: str, role: str = "train") -> pd.DataFrame:
    """Read a table from a path (format from its extension) or `hf:NAME[:CONFIG][@SPLIT]`."""
    if spec.startswith("hf:"):
        return _read_hf(spec, role)
    path = Path(spec)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: unknown format {path.suffix or '(no extension)'!r}; use .csv, .tsv, .jsonl or .parquet, "
            "or hf:NAME for a Hugging Face dataset"
        )
    if not path.exists():
        raise DataError(f"{path}: file not found ({role} data)")
    if not path.is_file():
        raise DataError(f"{path}: not a file ({role} data)")
    try:
        if fmt == "jsonl":
            return _read_jsonl(path)
        if fmt == "parquet":
            return pd.read_parquet(path)
        _check_utf8(path)
        return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", dtype=object, keep_default_na=False, na_values=[""])
    except DataError:
        raise
    except PermissionError:
        raise DataError(f"{path}: permission denied; check the file's permissions") from None
    except Exception as error:  # noqa: BLE001 - parser errors from pandas/pyarrow vary by format
        raise DataError(f"{path}: cannot read as {fmt} ({type(error).__name__}: {str(error)[:200]})") from None


def _column(frame: pd.DataFrame, column: str, spec: str, what: str, key: str | None = None) -> pd.Series:
    """`frame[column]`, or a DataError naming the columns found and the config `key` that chooses the column."""
    if column not in frame.columns:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(
            f"{spec}: no {what} column {column!r} (columns found: {found}); set {key or f'data.{what}_column'}"
        )
    return frame[column]


def clean_texts(
    values: pd.Series, spec: str, max_chars: int, skip_invalid: bool = False
) -> tuple[list[str], list[int], int]:
    """Validate texts: returns (texts, kept row indices, number truncated). Empty/null/non-string rows are
    an error naming them, unless `skip_invalid`."""
    texts, kept, bad, truncated = [], [], [], 0
    for index, value in enumerate(values.tolist()):
        if not isinstance(value, str) or not value.strip():
            bad.append(index)
            continue
        text = " ".join(value.split())
        if len(text) > max_chars:
            text = text[:max_chars]
            truncated += 1
        texts.append(text)
        kept.append(index)
    if bad and not skip_invalid:
        rows = ", ".join(str(i + 1) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise DataError(
            f"{spec}: {len(bad)} empty, null or non-string text(s) at row(s) {rows}; fix them, or set "
            "data.skip_invalid_rows: true to skip them"
        )
    return texts, kept, truncated


MAX_CLASSES = 1000  # more distinct labels than this almost always means data.label_column names the wrong column
_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?", re.ASCII)  # "2", "-1", "2.0", "2.5", ".5"


def _show(value: Any, limit: int = 60) -> str:
    """A short repr for messages, numpy scalars and arrays shown as Python values."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _preview(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(_show(name, 40) for name in names[:limit])
    return f"[{shown}]" if len(names) <= limit else f"[{shown}, ... ({len(names)} in all)]"


def _where(spec: str, column: str, row: int) -> str:
    return f"{spec}: column {column!r}, row {row + 1}"


def _label_names_from(label_names: list[str] | str | None, train_spec: str) -> tuple[list[str], str] | None:
    """The declared class names (id -> name by position) and where they came from, validated: a non-empty list of
    distinct, non-blank strings (compared with surrounding spaces stripped and case folded), at most MAX_CLASSES."""
    if isinstance(label_names, list):
        names, source = [str(name) for name in label_names], "data.label_names"
    else:
        if isinstance(label_names, str):
            path = Path(label_names)
        else:
            if train_spec.startswith("hf:"):
                return None
            path = Path(train_spec).with_name("labels.json")
            if not path.exists():
                return None
        source = str(path)
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: label-names file not found (data.label_names)") from None
        except IsADirectoryError:
            raise DataError(f"{path}: label-names path is a folder; give a JSON file (data.label_names)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: label-names file is not valid JSON ({error})") from None
        if not isinstance(loaded, list) or not all(isinstance(name, str) for name in loaded):
            raise DataError(f"{path}: label-names file must be a JSON list of strings (the class names in id order)")
        names = loaded
    return _check_names(names, source), source


def _check_names(names: list[str], source: str) -> list[str]:
    if not names:
        raise DataError(f"{source}: no class names given; list the class names in label-id order")
    if len(names) > MAX_CLASSES:
        raise DataError(f"{source}: {len(names)} class names; at most {MAX_CLASSES} classes are supported")
    names = [name.strip() for name in names]
    seen: dict[str, int] = {}
    for position, name in enumerate(names):
        if not name:
            raise DataError(f"{source}: the class name at id {position} is empty; name every class")
        key = name.casefold()
        if key in seen:
            first = seen[key]
            same = "repeats" if names[first] == name else "differs only in case or spaces from"
            raise DataError(
                f"{source}: class name {name!r} at id {position} {same} {names[first]!r} at id {first}; every class "
                "needs its own name"
            )
        seen[key] = position
    return names


def _is_blank(value: Any) -> bool:
    """A missing label: None, NaN/NA, or a string of only spaces."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(value != value)
    return isinstance(value, str) and not value.strip()


def _parse_label(value: Any, spec: str, column: str, row: int) -> int | str:
    """One raw label as an integer class id/value or a class name (stripped); a `DataError` for anything else."""
    if _is_blank(value):
        raise DataError(f"{_where(spec, column, row)}: no label; fill it in or remove the row")
    if isinstance(value, (bool, np.bool_)):
        raise DataError(
            f"{_where(spec, column, row)}: label {_show(value)} is a boolean; write the classes as integer ids or names"
        )
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise DataError(f"{_where(spec, column, row)}: label {_show(value)} is not a finite number; fix the row")
        if not float(value).is_integer():
            raise DataError(
                f"{_where(spec, column, row)}: label {_show(value)} has a fraction; class labels are integer ids or "
                "names (is this column a score rather than a class?)"
            )
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        number = _NUMBER.fullmatch(text)
        if number is None or not (number.group(2) or number.group(3)):
            return text
        sign, whole, fraction = number.groups()
        if fraction and fraction.strip("0"):
            raise DataError(
                f"{_where(spec, column, row)}: label {_show(value)} has a fraction; class labels are integer ids or "
                "names (is this column a score rather than a class?)"
            )
        try:
            return int(sign + (whole or "0"))
        except ValueError:  # beyond Python's int-from-string digit limit
            raise DataError(f"{_where(spec, column, row)}: label {_show(value)} is too long a number") from None
    if isinstance(value, (list, tuple, set, np.ndarray)):
        kind = f"a list (type {type(value).__name__}, e.g. a Parquet list column)"
    elif isinstance(value, dict):
        kind = "a mapping (type dict)"
    else:
        kind = f"of type {type(value).__name__}"
    raise DataError(
        f"{_where(spec, column, row)}: label {_show(value)} is {kind}; each label must be one integer id or one "
        "class name (check data.label_column)"
    )


class LabelMap:
    """Maps raw label values to contiguous class ids and keeps the class names.

    Only the classes that occur in the training labels are kept, never a range of integers: integer labels without
    declared names become classes named by their values, sorted numerically (1, 2.0 and "2" are one class); string
    labels become classes sorted by name. Declared names (`data.label_names`, a `labels.json` beside the train file,
    or a Hugging Face ClassLabel) map integer id -> name by position, or list the string labels in id order; every
    declared class must have training rows, since a classifier cannot learn a class without examples.
    """

    def __init__(
        self,
        raw_labels: list[Any],
        names: list[str] | None,
        spec: str,
        class_names: list[str] | None,
        rows: list[int] | None = None,
        column: str = "label",
        names_source: str | None = None,
    ):
        rows = list(range(len(raw_labels))) if rows is None else rows
        self.column = column
        keys: list[int | str] = []
        first_row: dict[int | str, int] = {}
        for value, row in zip(raw_labels, rows, strict=True):
            key = _parse_label(value, spec, column, row)
            if key not in first_row:
                if len(first_row) == MAX_CLASSES:
                    raise DataError(
                        f"{_where(spec, column, row)}: more than {MAX_CLASSES} distinct labels; at most {MAX_CLASSES} "
                        "classes are supported (is data.label_column the class column?)"
                    )
                first_row[key] = row
            keys.append(key)
        if not keys:
            raise DataError(f"{spec}: no labeled rows in column {column!r}")
        self.integer = isinstance(keys[0], int)
        mixed = next((key for key in first_row if isinstance(key, int) != self.integer), None)
        if mixed is not None:
            kind = "a class name" if self.integer else "an integer"
            raise DataError(
                f"{_where(spec, column, first_row[mixed])}: label {_show(mixed)} is {kind} but row {rows[0] + 1} has "
                f"the {'integer' if self.integer else 'name'} {_show(keys[0])}; use integer ids or class names in the "
                "whole column, not both"
            )
        if names is None and class_names is not None and self.integer:
            names, names_source = class_names, f"{spec} (class names of column {column!r})"
        source = names_source or "data.label_names"
        if names is not None:
            self.names = _check_names([str(name) for name in names], source)
            if self.integer:
                for key, row in first_row.items():
                    if not 0 <= key < len(self.names):
                        hint = (
                            f"; {_show(str(key))} is a name at id {self.names.index(str(key))}"
                            if str(key) in self.names
                            else ""
                        )
                        raise DataError(
                            f"{_where(spec, column, row)}: label {_show(key)} is not a class id "
                            f"0..{len(self.names) - 1} of the {len(self.names)} names in {source} (integer labels are "
                            f"0-based positions in that list){hint}; fix the label or the names"
                        )
                self.index: dict[int | str, int] = {i: i for i in range(len(self.names))}
            else:
                self.index = {name: i for i, name in enumerate(self.names)}
                folded = {name.casefold(): name for name in self.names}
                for key, row in first_row.items():
                    if key not in self.index:
                        spelled = folded.get(str(key).casefold())
                        hint = f" (the name is spelled {spelled!r})" if spelled else ""
                        raise DataError(
                            f"{_where(spec, column, row)}: label {_show(key)} is not among the class names in {source} "
                            f"{_preview(self.names)}{hint}; fix the label or add the name"
                        )
            unused = [i for i, name in enumerate(self.names) if (i if self.integer else name) not in first_row]
            if unused:
                listed = ", ".join(f"{self.names[i]!r} (id {i})" for i in unused[:10]) + (
                    " ..." if len(unused) > 10 else ""
                )
                renumber = self.integer and unused[0] < max(first_row)
                fix = " and renumber the integer labels to match" if renumber else ""
                raise DataError(
                    f"{source}: {len(unused)} declared class(es) have no row in {spec} column {column!r}: {listed}; a "
                    f"classifier cannot learn a class without examples: add training rows for them, or remove them "
                    f"from the names{fix}"
                )
        else:
            ordered = sorted(first_row)  # all ints (numeric order) or all names
            if not self.integer:
                spellings: dict[str, str] = {}
                for key in ordered:
                    other = spellings.setdefault(key.casefold(), key)
                    if other != key:
                        raise DataError(
                            f"{_where(spec, column, first_row[key])}: label {_show(key)} differs from {_show(other)} "
                            f"(row {first_row[other] + 1}) only in case; use one spelling per class"
                        )
            self.names = [str(key) for key in ordered]
            self.index = {key: i for i, key in enumerate(ordered)}
        self.train_ids = [self.index[key] for key in keys]

    @classmethod
    def from_names(cls, names: list[str], source: str, column: str = "label") -> LabelMap:
        """The map of a zero-label start: no training labels, the classes named in `source`; other splits may
        label rows by name or by integer id (a position in the names)."""
        label_map = cls.__new__(cls)
        label_map.column = column
        label_map.names = _check_names(names, source)
        label_map.integer = None  # both kinds are accepted
        by_id: dict[int | str, int] = {i: i for i in range(len(label_map.names))}
        label_map.index = {**by_id, **{name: i for i, name in enumerate(label_map.names)}}
        label_map.train_ids = []
        return label_map

    def encode(self, raw_labels: list[Any], spec: str, rows: list[int], column: str | None = None) -> list[int]:
        """Class ids of another split's labels; a label the training labels lack is an error naming its row."""
        column = column or self.column
        ids = []
        for value, row in zip(raw_labels, rows, strict=True):
            key = _parse_label(value, spec, column, row)
            if self.integer is not None and isinstance(key, int) != self.integer:
                kind, train_kind = ("an integer", "class names") if isinstance(key, int) else ("a name", "integer ids")
                raise DataError(
                    f"{_where(spec, column, row)}: label {_show(key)} is {kind} but the training labels are "
                    f"{train_kind}; use the same kind of labels in every split"
                )
            if key not in self.index:
                raise DataError(
                    f"{_where(spec, column, row)}: label {_show(key)} is absent from the training labels "
                    f"{_preview(self.names)}; add training rows of that class or drop the row"
                )
            ids.append(self.index[key])
        return ids


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
) -> TaskData:
    """Load and validate the labeled splits of a task."""
    notes: list[str] = []
    frame = read_table(train, "train")
    if len(frame) == 0:
        raise DataError(f"{train}: the training set is empty")
    texts_col = _column(frame, text_column, train, "text")
    labels_col = _column(frame, label_column, train, "label")
    texts, rows, truncated = clean_texts(texts_col, train, max_chars, skip_invalid_rows)
    if len(texts) < len(frame):
        notes.append(f"skipped {len(frame) - len(texts)} invalid training row(s)")
    raw = [labels_col.iloc[row] for row in rows]
    missing = [row for row, value in zip(rows, raw, strict=True) if _is_blank(value)]
    if missing:
        raise DataError(
            f"{_where(train, label_column, missing[0])}: no label ({len(missing)} row(s) without one); fill them in "
            "or remove those rows"
        )
    class_names = frame.attrs.get("class_names", {}).get(label_column)
    declared = _label_names_from(label_names, train)
    label_map = LabelMap(
        raw,
        declared[0] if declared else None,
        train,
        class_names,
        rows=rows,
        column=label_column,
        names_source=declared[1] if declared else None,
    )
    labels = label_map.train_ids
    if len(set(labels)) < 2:
        raise DataError(
            f"{train}: only one class ({label_map.names[labels[0]]!r}) in the training labels; "
            "a classifier needs at least two"
        )
    texts, labels, duplicate_notes = _drop_duplicates(texts, labels, rows, train)
    notes += duplicate_notes
    pool_size = len(texts)
    if per_class is not None:
        keep = stratified_sample(labels, per_class, seed, label_map.names, train)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    train_set = LabeledSet(texts, labels, truncated)

    def load_split(spec: str | None, role: str) -> LabeledSet | None:
        if spec is None:
            return None
        split_frame = read_table(spec, role)
        if len(split_frame) == 0:
            raise DataError(f"{spec}: the {role} set is empty")
        split_texts, split_rows, split_truncated = clean_texts(
            _column(split_frame, text_column, spec, "text"), spec, max_chars, skip_invalid_rows
        )
        split_labels = _column(split_frame, label_column, spec, "label")
        split_raw = [split_labels.iloc[r] for r in split_rows]
        return LabeledSet(split_texts, label_map.encode(split_raw, spec, split_rows, label_column), split_truncated)

    if test is None and train.startswith("hf:") and "@" not in train:
        test = train
    return TaskData(
        train=train_set,
        test=load_split(test, "test"),
        validation=load_split(validation, "validation"),
        label_names=label_map.names,
        pool_size=pool_size,
        notes=notes,
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
    declared = _label_names_from(label_names, "")
    assert declared is not None  # label_names is given: the config requires it without data.train
    names, source = declared
    label_map = LabelMap.from_names(names, source, label_column)
    if len(label_map.names) < 2:
        raise DataError(f"{source}: only one class ({label_map.names[0]!r}); a classifier needs at least two")

    def load_split(spec: str | None, role: str) -> LabeledSet | None:
        if spec is None:
            return None
        frame = read_table(spec, role)
        if len(frame) == 0:
            raise DataError(f"{spec}: the {role} set is empty")
        column = _column(frame, text_column, spec, "text")
        texts, rows, truncated = clean_texts(column, spec, max_chars, skip_invalid_rows)
        labels = _column(frame, label_column, spec, "label")
        return LabeledSet(texts, label_map.encode([labels.iloc[r] for r in rows], spec, rows, label_column), truncated)

    return TaskData(
        train=LabeledSet([], []),
        test=load_split(test, "test"),
        validation=load_split(validation, "validation"),
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
            f"data.label_descriptions: {unknown[0]!r} is not a class name (classes: {_preview(task.label_names)})"
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
    )


def iter_unlabeled(spec: str, text_column: str, rows: int = 10_000) -> Iterator[list[object]]:
    """The raw values of `text_column` of an unlabeled file in batches of about `rows`, without loading the
    file whole: Parquet by row groups, JSONL line by line, CSV/TSV in pandas chunks (`hf:` datasets are read
    whole). Values are passed through unchanged (the caller counts non-string and empty ones)."""
    if spec.startswith("hf:"):
        frame = read_table(spec, "transfer")
        values = _column(frame, text_column, spec, "text").tolist()
        for start in range(0, len(values), rows):
            yield values[start : start + rows]
        return
    path = Path(spec)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None or not path.is_file():
        read_table(spec, "transfer")  # raises the one-line error for a bad path or format
        return
    try:
        if fmt == "parquet":
            parquet = pq.ParquetFile(path)
            if text_column not in parquet.schema_arrow.names:
                _column(pd.DataFrame(columns=parquet.schema_arrow.names), text_column, spec, "text")
            for batch in parquet.iter_batches(batch_size=rows, columns=[text_column]):
                yield batch.column(0).to_pylist()
        elif fmt == "jsonl":
            batch: list[object] = []
            with open(path, "rb") as handle:
                for line_no, raw in enumerate(handle, start=1):
                    if not raw.strip():
                        continue
                    try:
                        row = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        raise DataError(f"{path}: line {line_no} is not valid UTF-8 JSON") from None
                    if not isinstance(row, dict):
                        raise DataError(f"{path}: line {line_no} is not a JSON object")
                    if text_column not in row and line_no == 1:
                        _column(pd.DataFrame(columns=list(row)), text_column, spec, "text")
                    batch.append(row.get(text_column))
                    if len(batch) == rows:
                        yield batch
                        batch = []
            if batch:
                yield batch
        else:
            _check_utf8(path)
            sep = "\t" if fmt == "tsv" else ","
            reader = pd.read_csv(path, sep=sep, dtype=object, keep_default_na=False, na_values=[""], chunksize=rows)
            for chunk in reader:
                yield _column(chunk, text_column, spec, "text").tolist()
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - parser errors from pandas/pyarrow vary by format
        raise DataError(f"{path}: cannot read as {fmt} ({type(error).__name__}: {str(error)[:200]})") from None
