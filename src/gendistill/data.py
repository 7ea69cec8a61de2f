"""Load labeled and unlabeled text data (CSV/TSV/JSONL/Parquet/`hf:`), map labels, draw low-data samples.

Every problem a user's file can have is reported as a one-line `DataError` naming the file, row or column.
"""

from __future__ import annotations

import json
import numbers
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

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


def _label_names_from(label_names: list[str] | str | None, train_spec: str) -> list[str] | None:
    if isinstance(label_names, list):
        return [str(name) for name in label_names]
    if isinstance(label_names, str):
        path = Path(label_names)
    else:
        if train_spec.startswith("hf:"):
            return None
        path = Path(train_spec).with_name("labels.json")
        if not path.exists():
            return None
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: label-names file not found (data.label_names)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: label-names file is not valid JSON ({error})") from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise DataError(f"{path}: label-names file must be a JSON list of strings")
    return names


def _is_int_label(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer()):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


class LabelMap:
    """Maps raw label values (strings or ints) to contiguous ids and keeps the class names."""

    def __init__(self, raw_labels: list[Any], names: list[str] | None, spec: str, class_names: list[str] | None):
        self.integer = all(_is_int_label(value) for value in raw_labels)
        if self.integer:
            ids = sorted({int(float(value)) for value in raw_labels})
            names = names or class_names
            if names is None:
                names = [str(i) for i in range(max(ids) + 1)]
            if ids and (ids[0] < 0 or ids[-1] >= len(names)):
                raise DataError(
                    f"{spec}: label {ids[-1] if ids[-1] >= len(names) else ids[0]} is outside 0..{len(names) - 1} "
                    f"(there are {len(names)} label names)"
                )
            self.names = list(names)
        else:
            values = sorted({str(value) for value in raw_labels})
            self.names = list(names) if names else values
            unknown = [value for value in values if value not in self.names]
            if unknown:
                raise DataError(f"{spec}: label(s) {unknown[:5]} are not among data.label_names {self.names}")
        self.index = {name: i for i, name in enumerate(self.names)}

    def encode(self, raw_labels: list[Any], spec: str, rows: list[int]) -> list[int]:
        ids = []
        for value, row in zip(raw_labels, rows, strict=True):
            if value is None or (isinstance(value, numbers.Real) and value != value):
                raise DataError(f"{spec}: row {row + 1} has no label")
            if self.integer:
                if not _is_int_label(value):
                    raise DataError(
                        f"{spec}: row {row + 1}: label {value!r} is not an integer like the training labels"
                    )
                label = int(float(value))
                if not 0 <= label < len(self.names):
                    raise DataError(
                        f"{spec}: row {row + 1}: label {label} is absent from the training labels "
                        f"(0..{len(self.names) - 1})"
                    )
                ids.append(label)
            else:
                if str(value) not in self.index:
                    raise DataError(
                        f"{spec}: row {row + 1}: label {value!r} is absent from the training labels {self.names}"
                    )
                ids.append(self.index[str(value)])
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
    missing = [row for row, value in zip(rows, raw, strict=True) if value is None or value != value]
    if missing:
        raise DataError(f"{train}: row {missing[0] + 1} has no label ({len(missing)} row(s) without a label)")
    class_names = frame.attrs.get("class_names", {}).get(label_column)
    label_map = LabelMap(raw, _label_names_from(label_names, train), train, class_names)
    labels = label_map.encode(raw, train, rows)
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
        split_raw = [_column(split_frame, label_column, spec, "label").iloc[r] for r in split_rows]
        return LabeledSet(split_texts, label_map.encode(split_raw, spec, split_rows), split_truncated)

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


def load_task_from_config(data: DataConfig) -> TaskData:
    """`load_task` with the fields of the config's `data` section."""
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


def load_unlabeled(spec: str, text_column: str, max_chars: int) -> list[str]:
    """Texts of an unlabeled `file` transfer source; empty and non-string rows are skipped (counted by caller)."""
    frame = read_table(spec, "transfer")
    column = _column(frame, text_column, spec, "text")
    texts, _, _ = clean_texts(column, spec, max_chars, skip_invalid=True)
    return texts
