"""Multi-label rows: the three forms they come in, the errors, the low-data sample, the run dir's copy."""

import json

import pandas as pd
import pytest

from gendistill.config import build_config
from gendistill.data.stored import read_task, write_task
from gendistill.data.task import load_task
from gendistill.errors import ConfigError, DataError
from gendistill.pipeline.layout import RunLayout
from gendistill.stages.data import check_data

TAGS = [["billing"], ["billing", "refund"], ["login"], [], ["refund", "login"], ["login", "billing"]]


def rows(label_sets, key="label"):
    return [{"text": f"ticket number {i}", key: labels} for i, labels in enumerate(label_sets)]


def jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def test_lists_in_jsonl_are_a_multi_label_task_with_sorted_ids_and_empty_sets_kept(tmp_path):
    task = load_task(jsonl(tmp_path / "train.jsonl", rows(TAGS)))
    assert task.multi_label
    assert task.label_names == ["billing", "login", "refund"]
    assert task.train.labels == [[0], [0, 2], [1], [], [1, 2], [0, 1]]


def test_a_parquet_list_column_of_ids_takes_names_from_labels_json(tmp_path):
    pd.DataFrame(rows([[0], [0, 2], [1], [2, 1]])).to_parquet(tmp_path / "train.parquet")
    (tmp_path / "labels.json").write_text(json.dumps(["joy", "anger", "fear"]))
    task = load_task(str(tmp_path / "train.parquet"))
    assert task.multi_label and task.label_names == ["joy", "anger", "fear"]
    assert task.train.labels == [[0], [0, 2], [1], [1, 2]]


def test_a_delimited_csv_column_and_one_column_per_label_give_the_same_task(tmp_path):
    pd.DataFrame([{"text": r["text"], "label": "|".join(r["label"])} for r in rows(TAGS)]).to_csv(
        tmp_path / "delimited.csv", index=False
    )
    names = ["billing", "login", "refund"]
    flags = [{"text": r["text"], **{name: int(name in r["label"]) for name in names}} for r in rows(TAGS)]
    pd.DataFrame(flags).to_csv(tmp_path / "columns.csv", index=False)
    delimited = load_task(str(tmp_path / "delimited.csv"), label_delimiter="|")
    columns = load_task(str(tmp_path / "columns.csv"), label_columns=names)
    assert delimited.multi_label and columns.multi_label
    assert delimited.label_names == columns.label_names == names
    assert delimited.train.labels == columns.train.labels == [[0], [0, 2], [1], [], [1, 2], [0, 1]]


def test_lists_mixed_with_single_labels_are_refused_naming_both_rows(tmp_path):
    path = jsonl(tmp_path / "train.jsonl", rows([["a"], ["a", "b"], "b", ["b"]]))
    with pytest.raises(DataError, match=r"train\.jsonl: column 'label', row 3: label 'b' is a single label but row 1"):
        load_task(path)


def test_an_unknown_label_inside_a_test_list_names_the_row(tmp_path):
    train = jsonl(tmp_path / "train.jsonl", rows(TAGS))
    test = jsonl(tmp_path / "test.jsonl", rows([["login"], ["billing", "shipping"]]))
    with pytest.raises(DataError, match=r"test\.jsonl: column 'label', row 2: label 'shipping' is absent"):
        load_task(train, test)


def test_single_labels_in_the_test_split_of_a_multi_label_task_are_refused(tmp_path):
    train = jsonl(tmp_path / "train.jsonl", rows(TAGS))
    test = jsonl(tmp_path / "test.jsonl", rows(["login"]))
    with pytest.raises(DataError, match=r"row 1: label 'login' is a single value but the training labels are lists"):
        load_task(train, test)


def test_a_missing_cell_is_refused_and_an_empty_list_is_no_label(tmp_path):
    path = jsonl(tmp_path / "train.jsonl", rows([["a"], [], None, ["b"]]))
    with pytest.raises(DataError, match=r"row 3: no label \(a missing cell\); write an empty list if no label"):
        load_task(path)


def test_declared_multi_label_with_single_values_and_no_delimiter_is_refused(tmp_path):
    path = jsonl(tmp_path / "train.jsonl", rows(["a", "b", "a"]))
    with pytest.raises(DataError, match=r"row 1: label 'a' is a single value but data\.multi_label is true"):
        load_task(path, multi_label=True)


def test_a_flag_that_is_not_0_or_1_names_its_column_and_row(tmp_path):
    pd.DataFrame([{"text": "x y z", "a": 1, "b": 0}, {"text": "y z w", "a": 2, "b": 1}]).to_csv(
        tmp_path / "train.csv", index=False
    )
    with pytest.raises(DataError, match=r"train\.csv: column 'a', row 2: value '2' is not 0 or 1"):
        load_task(str(tmp_path / "train.csv"), label_columns=["a", "b"])


def test_per_label_sample_gives_every_label_at_least_n_rows_and_is_seeded(tmp_path):
    sets = [["common"]] * 40 + [["common", "rare"]] * 3 + [["rare"]] * 3 + [["mid"]] * 10 + [[]] * 10
    path = jsonl(tmp_path / "train.jsonl", rows(sets))
    first = load_task(path, per_class=4, seed=1)
    assert first.train.texts == load_task(path, per_class=4, seed=1).train.texts
    assert first.train.texts != load_task(path, per_class=4, seed=2).train.texts
    counts = {name: sum(i in labels for labels in first.train.labels) for i, name in enumerate(first.label_names)}
    assert min(counts.values()) >= 4 and counts["mid"] == 4
    assert sum(labels == [] for labels in first.train.labels) == 4
    with pytest.raises(DataError, match=r"data\.per_class=7 but label 'rare' has only 6 row"):
        load_task(path, per_class=7)


def test_the_run_dir_keeps_the_label_sets(tmp_path):
    task = load_task(jsonl(tmp_path / "train.jsonl", rows(TAGS)), jsonl(tmp_path / "test.jsonl", rows(TAGS[:3])))
    layout = RunLayout(tmp_path / "run")
    layout.data.mkdir(parents=True)
    write_task(layout, task)
    again = read_task(layout)
    assert again.multi_label and again.train.labels == task.train.labels and again.test.labels == [[0], [0, 2], [1]]


def test_config_refuses_contradicting_forms_and_plugins_that_answer_one_label(tmp_path):
    train = jsonl(tmp_path / "train.jsonl", rows(TAGS))
    contradicting = {"train": train, "multi_label": False, "label_delimiter": "|"}
    with pytest.raises(ConfigError, match=r"data\.label_delimiter is a multi-label form but data\.multi_label is f"):
        build_config({"data": contradicting, "teacher": {"model": "m"}})
    check_data(build_config({"data": {"train": train}, "teacher": {"model": "m"}}))  # hf_encoder answers per label
    llm = {"kind": "llm", "model": "m", "endpoint": "http://127.0.0.1:9/v1"}
    check_data(build_config({"data": {"train": train}, "teacher": llm}))  # asked for every label that applies
    single_label = {
        "teacher.kind 'auto' gives one label per text": {"teacher": {"kind": "auto", "model": "m"}},
        "rounds.count works on one label per text": {"teacher": {"model": "m"}, "rounds": {"count": 2}},
        "label.rebalance works on one label per text": {"teacher": {"model": "m"}, "label": {"rebalance": 2}},
    }
    for message, sections in single_label.items():
        with pytest.raises(ConfigError, match=r"is multi-label \(3 labels.*" + message):
            check_data(build_config({"data": {"train": train}, **sections}))
