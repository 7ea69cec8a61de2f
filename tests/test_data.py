import json

import pandas as pd
import pytest

from gendistill.data import load_task
from gendistill.errors import DataError


def rows_3class(n=4):
    return [{"text": f"text {label} number {i}", "label": label} for label in ("a", "b", "c") for i in range(n)]


def write(path, rows, fmt):
    frame = pd.DataFrame(rows)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    else:
        frame.to_parquet(path)
    return str(path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "parquet"])
def test_formats_and_string_labels(tmp_path, fmt):
    train = write(tmp_path / f"train.{fmt}", rows_3class(), fmt)
    task = load_task(train, train)
    assert task.label_names == ["a", "b", "c"]
    assert len(task.train) == 12 and sorted(set(task.train.labels)) == [0, 1, 2]
    assert task.test is not None and task.test.labels == task.train.labels


def test_integer_labels_take_names_from_labels_json(tmp_path):
    rows = [{"sentence": f"s {i}", "y": i % 2} for i in range(6)]
    train = write(tmp_path / "train.jsonl", rows, "jsonl")
    (tmp_path / "labels.json").write_text(json.dumps(["neg", "pos"]))
    task = load_task(train, text_column="sentence", label_column="y")
    assert task.label_names == ["neg", "pos"] and task.train.labels == [0, 1, 0, 1, 0, 1]


def test_per_class_sampling_is_stratified_and_seeded(tmp_path):
    train = write(tmp_path / "train.jsonl", rows_3class(10), "jsonl")
    first = load_task(train, per_class=3, seed=1)
    again = load_task(train, per_class=3, seed=1)
    other = load_task(train, per_class=3, seed=2)
    assert sorted(first.train.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert first.train.texts == again.train.texts and first.train.texts != other.train.texts
    assert first.pool_size == 30


def test_missing_text_column_lists_columns(tmp_path):
    train = write(tmp_path / "train.jsonl", rows_3class(), "jsonl")
    with pytest.raises(DataError, match=r"no text column 'sentence' \(columns found: text, label\)"):
        load_task(train, text_column="sentence")


def test_single_class_is_an_error(tmp_path):
    train = write(tmp_path / "train.jsonl", [{"text": "x y", "label": "a"}] * 3, "jsonl")
    with pytest.raises(DataError, match="only one class"):
        load_task(train)


def test_test_label_absent_from_training(tmp_path):
    train = write(tmp_path / "train.jsonl", rows_3class(), "jsonl")
    test = write(tmp_path / "test.jsonl", [{"text": "z", "label": "d"}], "jsonl")
    with pytest.raises(DataError, match="row 1: label 'd' is absent from the training labels"):
        load_task(train, test)


def test_per_class_larger_than_class(tmp_path):
    train = write(tmp_path / "train.jsonl", rows_3class(2), "jsonl")
    with pytest.raises(DataError, match="per_class=5 but class 'a' has only 2"):
        load_task(train, per_class=5)


def test_empty_and_null_texts_name_rows_unless_skipped(tmp_path):
    rows = rows_3class() + [{"text": "", "label": "a"}, {"text": None, "label": "b"}, {"text": 3, "label": "c"}]
    train = write(tmp_path / "train.jsonl", rows, "jsonl")
    with pytest.raises(DataError, match=r"3 empty, null or non-string text\(s\) at row\(s\) 13, 14, 15"):
        load_task(train)
    assert len(load_task(train, skip_invalid_rows=True).train) == 12


def test_non_utf8_names_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\nok,a\nbad \xff byte,b\n")
    with pytest.raises(DataError, match="line 3 is not valid UTF-8"):
        load_task(str(path))


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown format '.xlsx'"):
        load_task(str(tmp_path / "train.xlsx"))
    with pytest.raises(DataError, match="file not found"):
        load_task(str(tmp_path / "nope.jsonl"))


def test_long_texts_are_truncated_and_counted(tmp_path):
    rows = rows_3class() + [{"text": "word " * 100, "label": "a"}]
    task = load_task(write(tmp_path / "train.jsonl", rows, "jsonl"), max_chars=50)
    assert task.train.truncated == 1 and max(len(t) for t in task.train.texts) == 50
