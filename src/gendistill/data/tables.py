"""Read a user's table (CSV/TSV/JSONL/Parquet/plain text/`hf:`) and its text column; stream unlabeled texts.

A plain text file (`.txt`) is one text per line, read as a table with the one column `text`.

Every problem a user's file can have is reported as a one-line `DataError` naming the file, row or column.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq

from gendistill.errors import DataError
from gendistill.io import chunked

if TYPE_CHECKING:
    pass


FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
}
TEXT_FILE_COLUMN = "text"  # the one column of a plain text file


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


def _load_hf(spec: str, role: str) -> Any:
    """The `datasets.Dataset` of `hf:NAME[:CONFIG][@SPLIT]` (Arrow, memory-mapped from the datasets cache)."""
    body = spec.removeprefix("hf:")
    body, _, split = body.partition("@")
    name, _, config = body.partition(":")
    try:
        import datasets  # a dependency, but a second to import: only `hf:` tables pay for it

        return datasets.load_dataset(name, config or None, split=split or role)
    except Exception as error:  # noqa: BLE001 - the datasets library raises many types for "not reachable"
        raise DataError(
            f"{spec}: cannot load Hugging Face dataset {name!r} split {split or role!r} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); offline, export it to JSONL/Parquet and pass the path"
        ) from None


def _read_hf(spec: str, role: str) -> pd.DataFrame:
    dataset = _load_hf(spec, role)
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
            "or .txt (one text per line), or hf:NAME for a Hugging Face dataset"
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
        if fmt == "text":
            with open(path, encoding="utf-8") as handle:
                return pd.DataFrame({TEXT_FILE_COLUMN: [line.rstrip("\r\n") for line in handle if line.strip()]})
        return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", dtype=object, keep_default_na=False, na_values=[""])
    except DataError:
        raise
    except PermissionError:
        raise DataError(f"{path}: permission denied; check the file's permissions") from None
    except Exception as error:  # noqa: BLE001 - parser errors from pandas/pyarrow vary by format
        raise DataError(f"{path}: cannot read as {fmt} ({type(error).__name__}: {str(error)[:200]})") from None


def read_column(frame: pd.DataFrame, column: str, spec: str, what: str, key: str | None = None) -> pd.Series:
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


def iter_unlabeled(
    spec: str, text_column: str, rows: int = 10_000, column_key: str | None = None
) -> Iterator[list[object]]:
    """The raw values of `text_column` of an unlabeled file in batches of about `rows`, without loading the
    file whole: Parquet by row groups, JSONL and plain text line by line (a plain text file's one column is
    `text`; blank lines are skipped), CSV/TSV in pandas chunks, `hf:` datasets in Arrow batches (memory-mapped
    from the datasets cache). Values are passed
    through unchanged (the caller counts non-string and empty ones). A missing column is a DataError that names
    `column_key`, the config key choosing the column (default: data.text_column)."""
    if spec.startswith("hf:"):
        dataset = _load_hf(spec, "transfer")
        if text_column not in dataset.column_names:
            read_column(pd.DataFrame(columns=dataset.column_names), text_column, spec, "text", column_key)
        for batch in dataset.select_columns([text_column]).iter(batch_size=rows):
            yield batch[text_column]
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
                read_column(pd.DataFrame(columns=parquet.schema_arrow.names), text_column, spec, "text", column_key)
            for batch in parquet.iter_batches(batch_size=rows, columns=[text_column]):
                yield batch.column(0).to_pylist()
        elif fmt == "text":
            if text_column != TEXT_FILE_COLUMN:
                read_column(pd.DataFrame(columns=[TEXT_FILE_COLUMN]), text_column, spec, "text", column_key)
            with open(path, "rb") as handle:
                yield from chunked(_text_lines(handle, path), rows)
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
                        read_column(pd.DataFrame(columns=list(row)), text_column, spec, "text", column_key)
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
                yield read_column(chunk, text_column, spec, "text", column_key).tolist()
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - parser errors from pandas/pyarrow vary by format
        raise DataError(f"{path}: cannot read as {fmt} ({type(error).__name__}: {str(error)[:200]})") from None


def _text_lines(handle: Any, path: Path) -> Iterator[object]:
    """The non-blank lines of a plain-text corpus (one text per line), decoded as UTF-8 with a one-line error."""
    for line_no, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise DataError(f"{path}: line {line_no} is not valid UTF-8; re-save the file as UTF-8") from None
        if line.strip():
            yield line
