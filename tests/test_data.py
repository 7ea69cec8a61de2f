import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gendistill.data.task import load_task
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


# ---- label parsing (issue 14, item 2) -------------------------------------------------------------------------------

SHARED_AG_NEWS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ag_news"


def labeled_rows(labels):
    return [{"text": f"text number {i}", "label": label} for i, label in enumerate(labels)]


def write_csv_labels(path, labels):
    """A CSV whose label cells are written verbatim (CSV labels always arrive as strings)."""
    path.write_text("text,label\n" + "".join(f"text number {i},{label}\n" for i, label in enumerate(labels)))
    return str(path)


def test_integer_labels_keep_only_the_classes_that_occur(tmp_path):
    from gendistill.evaluation.measure import classification_metrics

    task = load_task(write(tmp_path / "train.jsonl", labeled_rows([1, 2, 3, 4] * 2), "jsonl"))
    assert task.label_names == ["1", "2", "3", "4"]
    assert task.train.labels == [0, 1, 2, 3] * 2
    perfect = classification_metrics(task.train.labels, np.array(task.train.labels), len(task.label_names))
    assert perfect["macro_f1"] == 1.0  # was 0.8: an empty class "0" counted in the macro average


def test_a_stray_integer_label_is_one_class_not_a_range(tmp_path):
    task = load_task(write(tmp_path / "train.jsonl", labeled_rows([0, 1, 5000, 1, 0]), "jsonl"))
    assert task.label_names == ["0", "1", "5000"] and task.train.labels == [0, 1, 2, 1, 0]


def test_integer_classes_sort_numerically(tmp_path):
    task = load_task(write(tmp_path / "train.jsonl", labeled_rows([10, 9, -1, 10]), "jsonl"))
    assert task.label_names == ["-1", "9", "10"] and task.train.labels == [2, 1, 0, 2]


def test_a_huge_integer_label_allocates_nothing_proportional(tmp_path):
    """10**30 once ran a process out of memory (a name per integer up to it). Address space is capped at 1 GiB
    above the current size while loading, so a regression fails with MemoryError instead of taking the machine."""
    resource = pytest.importorskip("resource")
    train = write(tmp_path / "train.jsonl", labeled_rows([0, 1, 10**30, 1]), "jsonl")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    pages = int(Path("/proc/self/statm").read_text().split()[0]) if Path("/proc/self/statm").exists() else None
    if pages is None:
        pytest.skip("needs /proc/self/statm to cap memory safely")
    cap = pages * resource.getpagesize() + 2**30
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        task = load_task(train)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert task.label_names == ["0", "1", str(10**30)] and task.train.labels == [0, 1, 2, 1]


def test_more_classes_than_the_cap_is_an_error(tmp_path):
    from gendistill.data.labels import MAX_CLASSES

    train = write(tmp_path / "train.jsonl", labeled_rows(range(MAX_CLASSES + 500)), "jsonl")
    with pytest.raises(DataError, match=rf"column 'label', row {MAX_CLASSES + 1}: more than {MAX_CLASSES} distinct"):
        load_task(train)


def test_integral_floats_and_integer_strings_are_one_integer_class_jsonl(tmp_path):
    task = load_task(write(tmp_path / "train.jsonl", labeled_rows([1, 2.0, 1, 2]), "jsonl"))
    assert task.label_names == ["1", "2"] and task.train.labels == [0, 1, 0, 1]


def test_integral_floats_and_integer_strings_are_one_integer_class_csv(tmp_path):
    task = load_task(write_csv_labels(tmp_path / "train.csv", ["1", "2.0", "2", " 1 ", "+2"]))
    assert task.label_names == ["1", "2"] and task.train.labels == [0, 1, 1, 0, 1]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_label_with_a_fraction_is_an_error_naming_the_row(tmp_path, fmt):
    labels = [0, 1, 2.5, 1]
    train = (
        write(tmp_path / "train.jsonl", labeled_rows(labels), "jsonl")
        if fmt == "jsonl"
        else write_csv_labels(tmp_path / "train.csv", labels)
    )
    with pytest.raises(DataError, match=rf"train\.{fmt}: column 'label', row 3: label '?2\.5'? has a fraction"):
        load_task(train)


def test_boolean_labels_are_an_error(tmp_path):
    train = write(tmp_path / "train.jsonl", labeled_rows([True, False, True]), "jsonl")
    with pytest.raises(DataError, match=r"train\.jsonl: column 'label', row 1: label True is a boolean"):
        load_task(train)


def test_list_labels_in_a_task_declared_single_label_are_an_error(tmp_path):
    train = write(tmp_path / "train.parquet", labeled_rows([[0], [1], [0]]), "parquet")
    with pytest.raises(DataError, match=r"column 'label', row 1: label \[0\] is a list but data\.multi_label is false"):
        load_task(train, multi_label=False)


def test_mapping_labels_are_an_error(tmp_path):
    train = write(tmp_path / "train.jsonl", labeled_rows(["a", "b", {"id": 1}]), "jsonl")
    with pytest.raises(DataError, match=r"train\.jsonl: column 'label', row 3: label \{'id': 1\} is a mapping"):
        load_task(train)


@pytest.mark.parametrize(
    "fmt, blank", [("jsonl", ""), ("jsonl", "   "), ("jsonl", None), ("csv", " "), ("csv", "")], ids=repr
)
def test_an_empty_or_blank_label_is_a_missing_label(tmp_path, fmt, blank):
    labels = ["a", "b", blank, "a"]
    train = (
        write(tmp_path / "train.jsonl", labeled_rows(labels), "jsonl")
        if fmt == "jsonl"
        else write_csv_labels(tmp_path / "train.csv", labels)
    )
    with pytest.raises(DataError, match=rf"train\.{fmt}: column 'label', row 3: no label"):
        load_task(train)


def test_a_blank_label_in_the_test_split_is_an_error(tmp_path):
    train = write(tmp_path / "train.jsonl", rows_3class(), "jsonl")
    test = write(tmp_path / "test.jsonl", labeled_rows(["a", " "]), "jsonl")
    with pytest.raises(DataError, match=r"test\.jsonl: column 'label', row 2: no label"):
        load_task(train, test)


def test_integer_ids_and_names_in_one_column_are_an_error(tmp_path):
    train = write(tmp_path / "train.jsonl", labeled_rows([1, 2, "three"]), "jsonl")
    with pytest.raises(DataError, match=r"row 3: label 'three' is a class name but row 1 has the integer 1"):
        load_task(train)


def test_string_labels_are_stripped_and_case_variants_refused(tmp_path):
    task = load_task(write(tmp_path / "train.jsonl", labeled_rows([" a", "a ", "b"]), "jsonl"))
    assert task.label_names == ["a", "b"] and task.train.labels == [0, 0, 1]
    train = write(tmp_path / "cased.jsonl", labeled_rows(["Sports", "b", "sports"]), "jsonl")
    with pytest.raises(DataError, match=r"row 3: label 'sports' differs from 'Sports' \(row 1\) only in case"):
        load_task(train)


@pytest.mark.parametrize(
    "names, expected",
    [
        (["neg", "pos", "neg"], r"data\.label_names: class name 'neg' at id 2 repeats 'neg' at id 0"),
        (["neg", " Neg "], r"data\.label_names: class name 'Neg' at id 1 differs only in case or spaces from 'neg'"),
        ("labels.json", r"labels\.json: class name 'POS' at id 2 differs only in case or spaces from 'pos' at id 1"),
    ],
)
def test_duplicate_label_names_are_refused(tmp_path, names, expected):
    train = write(tmp_path / "train.jsonl", labeled_rows([0, 1, 2, 0]), "jsonl")
    if names == "labels.json":
        (tmp_path / "labels.json").write_text(json.dumps(["neg", "pos", "POS"]))
        names = None
    with pytest.raises(DataError, match=expected):
        load_task(train, label_names=names)


def test_declared_names_without_training_rows_are_refused_labels_json(tmp_path):
    train = write(tmp_path / "train.jsonl", labeled_rows([0, 2, 0, 2]), "jsonl")
    (tmp_path / "labels.json").write_text(json.dumps(["neg", "neutral", "pos", "mixed"]))
    with pytest.raises(
        DataError,
        match=r"labels\.json: 2 declared class\(es\) have no row in .*train\.jsonl column 'label': 'neutral' \(id 1\), "
        r"'mixed' \(id 3\); .*renumber the integer labels",
    ):
        load_task(train)


def test_declared_names_without_training_rows_are_refused_string_labels(tmp_path):
    train = write(tmp_path / "train.csv", rows_3class(), "csv")
    with pytest.raises(DataError, match=r"data\.label_names: 1 declared class\(es\) have no row .*'d' \(id 3\)"):
        load_task(train, label_names=["a", "b", "c", "d"])


def test_declared_names_fix_the_order_of_string_labels(tmp_path):
    task = load_task(write(tmp_path / "train.csv", rows_3class(), "csv"), label_names=["c", "a", "b"])
    assert task.label_names == ["c", "a", "b"] and sorted(set(task.train.labels)) == [0, 1, 2]
    assert task.train.labels[:4] == [1, 1, 1, 1]  # the "a" rows


@pytest.mark.parametrize("label, row", [(3, 2), (-1, 2)])
def test_integer_labels_must_be_ids_of_the_declared_names(tmp_path, label, row):
    train = write(tmp_path / "train.jsonl", labeled_rows([0, label, 1, 2]), "jsonl")
    with pytest.raises(DataError, match=rf"column 'label', row {row}: label {label} is not a class id 0\.\.2"):
        load_task(train, label_names=["a", "b", "c"])


def test_a_test_label_outside_the_training_classes_is_an_error(tmp_path):
    train = write(tmp_path / "train.jsonl", labeled_rows([1, 2, 1, 2]), "jsonl")
    test = write(tmp_path / "test.jsonl", labeled_rows([2, 0]), "jsonl")
    with pytest.raises(DataError, match=r"test\.jsonl: column 'label', row 2: label 0 is absent from the training"):
        load_task(train, test)


def test_test_split_labels_use_the_same_parsing(tmp_path):
    train = write(tmp_path / "train.jsonl", labeled_rows([1, 2, 1, 2]), "jsonl")
    task = load_task(train, write_csv_labels(tmp_path / "test.csv", ["2.0", "1", " 2"]))
    assert task.test is not None and task.test.labels == [1, 0, 1]


@pytest.mark.skipif(not (SHARED_AG_NEWS / "labels.json").exists(), reason="benchmark data ../shared/data absent")
def test_benchmark_ag_news_keeps_its_declared_classes():
    task = load_task(str(SHARED_AG_NEWS / "train.jsonl"), per_class=8, seed=0)
    assert task.label_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert sorted(task.train.labels) == [0] * 8 + [1] * 8 + [2] * 8 + [3] * 8


def test_equal_large_numbers_written_differently_are_one_class(tmp_path):
    """'1e30' was a class name beside the integer 10**30; written in any exact form, one number is one class."""
    labels = ["1e30", str(10**30), "1.0e+30", "0", 10**30, "0e5"]
    task = load_task(write(tmp_path / "train.jsonl", labeled_rows(labels), "jsonl"))
    assert task.label_names == ["0", str(10**30)] and task.train.labels == [1, 1, 1, 0, 1, 0]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_float_label_too_large_to_be_exact_is_refused(tmp_path, fmt):
    """The float 1e30 is 1000000000000000019884624838656 as an integer: a class apart from 10**30."""
    labels = [0, 10**30, 1e30, 0] if fmt == "jsonl" else [0.0, 1.0, 1e30, 0.0]
    train = write(tmp_path / f"train.{fmt}", labeled_rows(labels), fmt)
    with pytest.raises(DataError, match=r"row 3: label 1e\+30 is a floating-point number too large"):
        load_task(train)


def test_a_label_with_an_absurd_exponent_is_refused_quickly(tmp_path):
    train = write(tmp_path / "train.jsonl", labeled_rows(["0", "1e999999999", "0"]), "jsonl")
    with pytest.raises(DataError, match="row 2: label '1e999999999' is too long a number"):
        load_task(train)
