"""Every bad input a user can give: exit code 2, a one-line message naming the problem, no traceback, and the
error comes before any training (the pre-flight check)."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from gendistill.cli import app
from gendistill.generation import rule_based

runner = CliRunner()


def base_config(task_dir, teacher_dir):
    return {
        "data": {"train": str(task_dir / "train.jsonl"), "test": str(task_dir / "test.jsonl")},
        "teacher": {"model": str(teacher_dir), "epochs": 1, "max_length": 32},
        "student": {"embedding_dim": 8, "hidden_dim": 8, "epochs": 1, "init": "random"},
        "device": "cpu",
    }


def run_cli(tmp_path, config, *extra):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config) if isinstance(config, dict) else config)
    return runner.invoke(app, ["run", str(path), "--run-dir", str(tmp_path / "run"), *extra])


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    message = result.output.strip().splitlines()
    assert len(message) == 1, result.output  # one line
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)
    return result.output


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


ROWS = [{"text": f"some words {i}", "label": "a" if i % 2 else "b"} for i in range(8)]


@pytest.mark.parametrize(
    "case",
    [
        "missing_file",
        "not_a_file",
        "unknown_format",
        "missing_text_column",
        "missing_label_column",
        "empty",
        "single_class",
        "test_label_absent",
        "null_texts",
        "non_utf8",
        "per_class_too_large",
        "label_fraction",
        "label_list",
        "label_names_unused",
        "label_names_duplicate",
    ],
)
def test_bad_data(case, tmp_path, task_dir, tiny_teacher_dir):
    config = base_config(task_dir, tiny_teacher_dir)
    data = config["data"]
    expected: tuple[str, ...]
    if case == "missing_file":
        data["train"] = str(tmp_path / "nope.jsonl")
        expected = ("nope.jsonl", "file not found")
    elif case == "not_a_file":
        (tmp_path / "folder.jsonl").mkdir()
        data["train"] = str(tmp_path / "folder.jsonl")
        expected = ("folder.jsonl", "not a file")
    elif case == "unknown_format":
        data["train"] = str(tmp_path / "train.xlsx")
        expected = ("unknown format '.xlsx'",)
    elif case == "missing_text_column":
        data["text_column"] = "sentence"
        expected = ("no text column 'sentence'", "columns found: text, label")
    elif case == "missing_label_column":
        data["label_column"] = "category"
        expected = ("no label column 'category'", "data.label_column")
    elif case == "empty":
        (tmp_path / "empty.jsonl").write_text("")
        data["train"] = str(tmp_path / "empty.jsonl")
        expected = ("empty.jsonl", "empty")
    elif case == "single_class":
        data["train"] = write_jsonl(tmp_path / "one.jsonl", [{"text": f"t {i}", "label": "a"} for i in range(4)])
        expected = ("only one class", "'a'")
    elif case == "test_label_absent":
        data["test"] = write_jsonl(tmp_path / "test.jsonl", [{"text": "x y", "label": "astronomy"}])
        expected = ("test.jsonl", "row 1", "'astronomy' is absent from the training labels")
    elif case == "null_texts":
        data["train"] = write_jsonl(
            tmp_path / "t.jsonl", ROWS + [{"text": None, "label": "a"}, {"text": "", "label": "b"}]
        )
        expected = ("t.jsonl", "row(s) 9, 10", "skip_invalid_rows")
    elif case == "non_utf8":
        (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9 ok,a\nfine,b\n".encode("latin-1"))
        data["train"] = str(tmp_path / "latin.csv")
        expected = ("latin.csv", "line 2 is not valid UTF-8")
    elif case == "label_fraction":
        rows = [{"text": f"t {i}", "label": i % 2} for i in range(6)] + [{"text": "t x", "label": 0.5}]
        data["train"] = write_jsonl(tmp_path / "frac.jsonl", rows)
        expected = ("frac.jsonl", "column 'label', row 7", "label 0.5 has a fraction")
    elif case == "label_list":
        data["train"] = write_jsonl(tmp_path / "list.jsonl", [{"text": "x y", "label": ["a"]}] + ROWS)
        expected = ("list.jsonl", "column 'label', row 2", "is a single label but row 1 holds a list")
    elif case == "label_names_unused":
        data["label_names"] = ["cooking", "sports", "weather", "politics"]
        expected = ("data.label_names", "'politics' (id 3)", "cannot learn a class without examples")
    elif case == "label_names_duplicate":
        data["label_names"] = ["cooking", "sports", "Sports"]
        expected = ("data.label_names", "'Sports' at id 2 differs only in case or spaces from 'sports'")
    else:
        data["per_class"] = 500
        expected = ("per_class=500", "has only 20")
    assert_user_error(run_cli(tmp_path, config), *expected)
    assert not (tmp_path / "run" / "teacher").exists()  # nothing expensive ran


@pytest.mark.parametrize(
    "text, expected",
    [
        ("data: {train: [unclosed\n", ("malformed YAML at line",)),
        ("- just\n- a list\n", ("expected a mapping of sections",)),
    ],
)
def test_malformed_config(tmp_path, text, expected):
    assert_user_error(run_cli(tmp_path, text), *expected)


def test_config_file_missing(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "absent.yaml")])
    assert_user_error(result, "absent.yaml", "config file not found")


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "student.embeding_dim=8",
            ("unknown config key 'student.embeding_dim'", "did you mean 'student.embedding_dim'"),
        ),
        ("student.hidden_dim=-4", ("bad value for 'student.hidden_dim'", "greater than or equal to 8")),
        ("generator.learning_rate=-1", ("bad value for 'generator.learning_rate'", "greater than 0")),
        ("teacher.learning_rate=.inf", ("bad value for 'teacher.learning_rate'", "finite number")),
        ("student.arch=transformer", ("bad value for 'student.arch'", "expected one of bilstm, cnn, bag")),
        ("teacher.batch_size=0", ("bad value for 'teacher.batch_size'",)),
    ],
)
def test_bad_config_values(tmp_path, task_dir, tiny_teacher_dir, override, expected):
    assert_user_error(run_cli(tmp_path, base_config(task_dir, tiny_teacher_dir), "--set", override), *expected)


def test_model_id_unreachable_offline(tmp_path, task_dir, tiny_teacher_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = base_config(task_dir, tiny_teacher_dir)
    config["teacher"]["model"] = "bert-base-uncased"
    output = assert_user_error(
        run_cli(tmp_path, config),
        "teacher model 'bert-base-uncased' cannot be loaded",
        "not reachable offline",
        "local folder path",
    )
    assert "huggingface-cli download" in output


def test_model_folder_without_config(tmp_path, task_dir, tiny_teacher_dir):
    config = base_config(task_dir, tiny_teacher_dir)
    (tmp_path / "empty_model").mkdir()
    config["teacher"]["model"] = str(tmp_path / "empty_model")
    assert_user_error(run_cli(tmp_path, config), "empty_model", "no config.json")


def test_missing_file_source(tmp_path, task_dir, tiny_teacher_dir):
    config = base_config(task_dir, tiny_teacher_dir)
    config["transfer"] = {"sources": [{"type": "file", "path": str(tmp_path / "pool.jsonl")}]}
    assert_user_error(run_cli(tmp_path, config), "pool.jsonl", "file not found")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"mask_token": "[ MASK ]"}, ("transfer.sources[0].mask_token", "without whitespace")),
        ({"swap": "pos"}, ("transfer.sources[0].swap: pos needs TextBlob", "pip install textblob")),
    ],
)
def test_augment_source_problems_are_refused_before_any_training(
    tmp_path, task_dir, tiny_teacher_dir, monkeypatch, source, expected
):
    monkeypatch.setattr(rule_based, "_pos_tagger", lambda: None)  # TextBlob not installed
    config = base_config(task_dir, tiny_teacher_dir)
    config["transfer"] = {"sources": [{"type": "augment", **source}]}
    assert_user_error(run_cli(tmp_path, config), *expected)
    assert not (tmp_path / "run" / "teacher").exists()


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "/abs"])
def test_run_names_cannot_escape_runs_folder(tmp_path, task_dir, tiny_teacher_dir, name):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base_config(task_dir, tiny_teacher_dir)))
    result = runner.invoke(app, ["run", str(path), "--name", name])
    assert_user_error(result, "run name", "letters, digits")


def test_unknown_force_value(tmp_path, task_dir, tiny_teacher_dir):
    assert_user_error(
        run_cli(tmp_path, base_config(task_dir, tiny_teacher_dir), "--force", "evrything"),
        "--force 'evrything'",
        "expected one of",
    )


def test_duplicate_rows_are_dropped_with_a_warning(tmp_path):
    from gendistill.data.task import load_task

    rows = ROWS + [ROWS[0], ROWS[0], {"text": ROWS[1]["text"], "label": "b"}]
    task = load_task(write_jsonl(tmp_path / "d.jsonl", rows))
    assert len(task.train) == 9  # two exact repeats dropped, the conflicting label kept
    assert any("dropped 2 duplicate row(s)" in n and "row(s) 9, 10" in n for n in task.notes)
    assert any("different label" in n and "row(s) 11" in n for n in task.notes)


def test_long_texts_are_truncated_and_counted_in_the_run(tmp_path, task_dir, tiny_teacher_dir):
    import gendistill

    rows = [json.loads(line) for line in (task_dir / "train.jsonl").read_text().splitlines()]
    rows[0]["text"] = "word " * 1000
    config = base_config(task_dir, tiny_teacher_dir)
    config["data"].update(train=write_jsonl(tmp_path / "long.jsonl", rows), max_chars=300)
    run = gendistill.Run(gendistill.config.build_config(config), tmp_path / "run")
    run.run(only="data", force=["data"])
    stats = json.loads((tmp_path / "run" / "data" / "stats.json").read_text())
    assert stats["truncated"] == 1


def test_loading_is_safe_by_construction():
    """Every torch.load in the package passes weights_only=True; remote code is off unless asked for."""
    import re
    from pathlib import Path

    from gendistill.config import GeneratorConfig
    from gendistill.teachers.hf_encoder import HFEncoderTeacher as TeacherConfig

    source = Path(__file__).resolve().parents[1] / "src" / "gendistill"
    calls = [m for p in source.rglob("*.py") for m in re.finditer(r"torch\.load\(([^)]*)\)", p.read_text())]
    assert calls and all("weights_only=True" in m.group(1) for m in calls)
    assert not any(
        re.search(r"^\s*(import pickle|from pickle|import dill)", p.read_text(), re.M) for p in source.rglob("*.py")
    )
    assert TeacherConfig(model="m").trust_remote_code is False and GeneratorConfig().trust_remote_code is False
