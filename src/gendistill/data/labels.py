"""Parse a label column into class ids: names, integers, class lists from labels.json, with one-line errors."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gendistill.errors import DataError

if TYPE_CHECKING:
    pass


MAX_CLASSES = 1000  # more distinct labels than this almost always means data.label_column names the wrong column


# "2", "-1", "2.0", "2.5", ".5", "1e30", "2.5E+1": a number written in a text column, parsed exactly (Decimal)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
MAX_EXACT_FLOAT = 2**53  # beyond it a float is not an exact integer: 1e30 is 1000000000000000019884624838656
MAX_LABEL_DIGITS = 4000  # below Python's int-from-string limit; "1e999999999" would be a billion-digit integer


def _show(value: Any, limit: int = 60) -> str:
    """A short repr for messages, numpy scalars and arrays shown as Python values."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def preview(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(_show(name, 40) for name in names[:limit])
    return f"[{shown}]" if len(names) <= limit else f"[{shown}, ... ({len(names)} in all)]"


def where(spec: str, column: str, row: int) -> str:
    return f"{spec}: column {column!r}, row {row + 1}"


def label_names_from(label_names: list[str] | str | None, train_spec: str) -> tuple[list[str], str] | None:
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


def is_blank(value: Any) -> bool:
    """A missing label: None, NaN/NA, or a string of only spaces."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(value != value)
    return isinstance(value, str) and not value.strip()


def _parse_label(value: Any, spec: str, column: str, row: int) -> int | str:
    """One raw label as an integer class id/value or a class name (stripped); a `DataError` for anything else."""
    if is_blank(value):
        raise DataError(f"{where(spec, column, row)}: no label; fill it in or remove the row")
    if isinstance(value, (bool, np.bool_)):
        raise DataError(
            f"{where(spec, column, row)}: label {_show(value)} is a boolean; write the classes as integer ids or names"
        )
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise DataError(f"{where(spec, column, row)}: label {_show(value)} is not a finite number; fix the row")
        if not float(value).is_integer():
            raise DataError(_fraction_message(value, spec, column, row))
        if abs(value) > MAX_EXACT_FLOAT:
            raise DataError(
                f"{where(spec, column, row)}: label {_show(value)} is a floating-point number too large to be an exact "
                f"integer (above 2**53, so equal ids could become different classes); write class ids as integers "
                "or the classes as names"
            )
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text) is None:
            return text
        number = Decimal(text)  # exact: "1e30", "1000000000000000000000000000000" and 10**30 are one class
        if number.adjusted() >= MAX_LABEL_DIGITS:
            raise DataError(f"{where(spec, column, row)}: label {_show(value)} is too long a number")
        if number != number.to_integral_value():
            raise DataError(_fraction_message(value, spec, column, row))
        return int(number)
    if isinstance(value, (list, tuple, set, np.ndarray)):
        kind = f"a list (type {type(value).__name__}, e.g. a Parquet list column)"
    elif isinstance(value, dict):
        kind = "a mapping (type dict)"
    else:
        kind = f"of type {type(value).__name__}"
    raise DataError(
        f"{where(spec, column, row)}: label {_show(value)} is {kind}; each label must be one integer id or one "
        "class name (check data.label_column)"
    )


def _fraction_message(value: Any, spec: str, column: str, row: int) -> str:
    return (
        f"{where(spec, column, row)}: label {_show(value)} has a fraction; class labels are integer ids or names (is "
        "this column a score rather than a class?)"
    )


class LabelMap:
    """Maps raw label values to contiguous class ids and keeps the class names.

    Only the classes that occur in the training labels are kept, never a range of integers: integer labels without
    declared names become classes named by their values, sorted numerically (1, 2.0, "2" and "2e0" are one class;
    floats beyond 2**53 are refused); string labels become classes sorted by name. Declared names (`data.label_names`,
    a `labels.json` beside the train file, or a Hugging Face ClassLabel) map integer id -> name by position, or list
    the string labels in id order; every declared class must have training rows, since a classifier cannot learn a
    class without examples.
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
                        f"{where(spec, column, row)}: more than {MAX_CLASSES} distinct labels; at most {MAX_CLASSES} "
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
                f"{where(spec, column, first_row[mixed])}: label {_show(mixed)} is {kind} but row {rows[0] + 1} has "
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
                            f"{where(spec, column, row)}: label {_show(key)} is not a class id "
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
                            f"{where(spec, column, row)}: label {_show(key)} is not among the class names in {source} "
                            f"{preview(self.names)}{hint}; fix the label or add the name"
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
                            f"{where(spec, column, first_row[key])}: label {_show(key)} differs from {_show(other)} "
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
                    f"{where(spec, column, row)}: label {_show(key)} is {kind} but the training labels are "
                    f"{train_kind}; use the same kind of labels in every split"
                )
            if key not in self.index:
                raise DataError(
                    f"{where(spec, column, row)}: label {_show(key)} is absent from the training labels "
                    f"{preview(self.names)}; add training rows of that class or drop the row"
                )
            ids.append(self.index[key])
        return ids
