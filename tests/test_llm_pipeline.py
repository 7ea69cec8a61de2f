"""The whole pipeline with LLM plugins, on the fake OpenAI server (fast): an llm source and an llm teacher with
logprobs, a student that starts from an encoder named by `student.init_from`, the report's LLM fields; the zero-label
start and its one-line errors; what is keyed and what is a knob."""

import pytest
import yaml
from conftest import LABELS
from llm_servers import FakeOpenAI
from typer.testing import CliRunner

from gendistill import Run
from gendistill.cli import app
from gendistill.config import build_config
from gendistill.errors import ConfigError, DataError, YieldError
from gendistill.pipeline.preflight import preflight


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI() as server:
        yield server


def llm_config(task_dir, url, **student):
    return {
        "data": {"train": str(task_dir / "train.jsonl"), "test": str(task_dir / "test.jsonl")},
        "teacher": {"kind": "llm", "endpoint": url, "model": "fake", "shots": 1},
        "transfer": {
            "sources": [{"type": "llm", "endpoint": url, "model": "fake", "n": 24, "texts_per_request": 4}],
            "shard_size": 8,
        },
        "student": {"embedding_dim": 8, "hidden_dim": 8, "epochs": 2, "batch_size": 16, **student},
        "evaluate": {"speed_examples": 16},
        "device": "cpu",
    }


def test_llm_source_and_logprob_teacher_with_a_student_from_a_named_encoder(task_dir, tiny_teacher_dir, fake, tmp_path):
    raw = llm_config(task_dir, fake.url, init="teacher", init_from=str(tiny_teacher_dir))
    report = Run(build_config(raw), tmp_path / "run").run()
    teacher = report.teacher
    assert teacher.kind == "llm" and teacher.soft_labels == "logprobs" and teacher.accuracy == 1.0
    assert teacher.params is None and teacher.size_bytes is None and teacher.requests > 0
    assert 0 < teacher.covered_mass <= 1 and teacher.examples_per_s > 0
    assert "params_teacher_over_student" not in report.ratios
    source = report.transfer_set.sources[0]
    assert source.type == "llm" and source.kept == 24
    assert source.details["requested_label_agreement"]["overall"] == 1.0  # the fake writes on-topic texts
    assert report.student.init == "teacher" and report.student.accuracy is not None
    assert report.baseline_student is not None


def test_changing_a_knob_of_an_llm_plugin_reruns_nothing(task_dir, fake, tmp_path):
    raw = llm_config(task_dir, fake.url, init="random", baseline=False)
    run = Run(build_config(raw), tmp_path / "run")
    run.run()
    keys = {name: key["key"] for name, key in run.keys().items()}
    for knob in ("max_concurrency=2", "timeout=30", "max_retries=1", "endpoint=http://elsewhere:1/v1"):
        config = build_config(raw, [f"teacher.{knob}", f"transfer.sources.0.{knob}"])
        assert {name: key["key"] for name, key in Run(config, tmp_path / "run").keys().items()} == keys
    changed = build_config(raw, ["transfer.sources.0.temperature=0.5"])
    after = {name: key["key"] for name, key in Run(changed, tmp_path / "run").keys().items()}
    assert after["transfer"] != keys["transfer"] and after["teacher"] == keys["teacher"]


def test_a_zero_label_start(fake, task_dir, tmp_path):
    raw = llm_config(task_dir, fake.url, init="random")
    raw["data"] = {"label_names": LABELS, "test": str(task_dir / "test.jsonl")}
    raw["teacher"]["shots"] = 0
    report = Run(build_config(raw), tmp_path / "run").run()
    assert report.train_examples == 0 and report.data["gold_labels"] == 0 and report.baseline_student is None
    assert any("no gold labels were used" in note for note in report.notes)
    assert report.teacher.accuracy == 1.0 and report.transfer_set.sources[0].kept == 24


def test_zero_label_mistakes_are_one_line_errors(task_dir, tiny_teacher_dir, fake):
    base = llm_config(task_dir, fake.url, init="random")
    base["data"] = {"label_names": LABELS}
    with pytest.raises(ConfigError, match="data.train is not set .a zero-label start.: list the class names"):
        build_config({**base, "data": {"test": "t.jsonl"}})
    encoder_teacher = {**base, "teacher": {"model": str(tiny_teacher_dir)}}
    with pytest.raises(ConfigError, match="teacher.kind 'hf_encoder' trains on labeled texts"):
        preflight(build_config(encoder_teacher), {"data"})
    generate = {**base, "transfer": {"sources": [{"type": "generate", "n": 5}]}}
    with pytest.raises(ConfigError, match=r"transfer.sources\[0\] \(generate\) works from labeled texts"):
        preflight(build_config(generate), {"data"})
    described = {**base, "data": {**base["data"], "label_descriptions": {"sport": "games"}}}
    with pytest.raises(DataError, match="data.label_descriptions: 'sport' is not a class name"):
        preflight(build_config(described), {"data"})


def test_an_llm_teacher_with_init_teacher_needs_an_encoder(task_dir, fake):
    config = build_config(llm_config(task_dir, fake.url, init="teacher"))
    with pytest.raises(ConfigError, match="a 'llm' teacher has none; set student.init_from to an encoder folder"):
        preflight(config, {"distill"})


def test_a_server_that_echoes_the_api_key_leaves_it_in_no_file_and_no_output(task_dir, tmp_path, monkeypatch):
    """The key reaches no file of the run (JSON, Parquet, the SQLite cache, the report) and no line on the terminal,
    though the server sends it back in every answer, in generated texts and in a 400."""
    key = "sk-test-0123456789abcdef"
    monkeypatch.setenv("FAKE_LLM_KEY", key)
    with FakeOpenAI(echo_key=True) as server:
        raw = llm_config(task_dir, server.url, init="random")
        raw["teacher"]["api_key_env"] = raw["transfer"]["sources"][0]["api_key_env"] = "FAKE_LLM_KEY"
        config_path = tmp_path / "c.yaml"
        config_path.write_text(yaml.safe_dump(raw))
        result = CliRunner().invoke(app, ["run", str(config_path), "--run-dir", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
        assert all(request["headers"]["Authorization"] == f"Bearer {key}" for request in server.requests)
    assert key not in result.output
    holding = [path for path in (tmp_path / "run").rglob("*") if path.is_file() and key.encode() in path.read_bytes()]
    assert not holding, holding
    assert "[redacted]" in (tmp_path / "run" / "teacher" / "teacher.json").read_text()  # the 400's message, scrubbed


def test_a_key_pasted_into_a_set_override_is_not_echoed(task_dir, tmp_path):
    key = "sk-pasted-0123456789abcdef"
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump(llm_config(task_dir, "http://127.0.0.1:9/v1")))
    for override in (f"teacher.api_key_env={key}", f"teacher.nope.api_key_env={key}"):
        result = CliRunner().invoke(app, ["run", str(config_path), "--set", override])
        assert result.exit_code == 2 and key not in result.output, result.output


def generation_requests(server):
    """The requests that asked for texts (not the teacher's annotations, whose prompts end with "Class:")."""
    return [r for r in server.requests if not r["body"]["messages"][-1]["content"].rstrip().endswith("Class:")]


def test_an_llm_source_whose_lines_all_fail_the_filters_stops_early_with_one_line(task_dir, tmp_path):
    """The case of issue 21: a model whose lines all fail the filters used to spend the whole sample budget. It stops
    after 200 texts asked, with one line and exit code 2; a rerun pays nothing again; with min_yield 0 it resumes
    from what it drew, spends the budget, and the empty transfer set is one line naming the source."""
    with FakeOpenAI() as server:
        raw = llm_config(task_dir, server.url, init="random")
        raw["transfer"] = {
            "sources": [{"type": "llm", "endpoint": server.url, "model": "fake", "n": 120, "texts_per_request": 5}],
            "shard_size": 40,
            "filters": {"max_words": 3},  # the fake writes 6-word lines: every one is too long
        }
        config_path = tmp_path / "c.yaml"
        config_path.write_text(yaml.safe_dump(raw))
        command = ["run", str(config_path), "--run-dir", str(tmp_path / "run")]
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert len(generation_requests(server)) == 40  # 200 texts asked; the budget was 1,200 (240 requests)
        line = (
            "error: transfer.sources[0] (llm): stopped early: kept 0 of the 200 texts drawn toward n=120 (0.0%, under "
            "its min_yield 0.05); thrown away by transfer.filters: too_long 200; fake was asked for 200 texts"
        )
        assert line in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output and "lower min_yield (0 never stops)" in result.output
        result = CliRunner().invoke(app, command)  # the same command again: stops at once, asks nothing
        assert result.exit_code == 2 and "stopped early: kept 0 of the 200" in result.output, result.output
        assert len(generation_requests(server)) == 40
        result = CliRunner().invoke(app, [*command, "--set", "transfer.sources.0.min_yield=0"])
        assert result.exit_code == 2, result.output
        assert len(generation_requests(server)) == 240  # resumed after the 5 shards kept: 200 more requests
        empty = (
            "error: the transfer set is empty: transfer.sources[0] (llm) kept 0 of 1,200 (too_long 1,200); nothing "
            "to label or distill"
        )
        assert empty in " ".join(result.output.split()), result.output


@pytest.mark.parametrize("zero_label", [False, True])
def test_an_empty_transfer_set_is_one_line_naming_every_source(task_dir, fake, tmp_path, zero_label):
    """Before: with labeled texts the run finished as if nothing were wrong (a student of the labeled texts alone);
    in a zero-label start the distill stage crashed on an empty array."""
    raw = llm_config(task_dir, fake.url, init="random")
    if zero_label:
        raw["data"] = {"label_names": LABELS, "test": str(task_dir / "test.jsonl")}
        raw["teacher"]["shots"] = 0
    raw["transfer"] = {
        "sources": [
            {"type": "file", "path": str(task_dir / "unlabeled.jsonl")},
            {"type": "llm", "endpoint": fake.url, "model": "fake", "n": 8, "texts_per_request": 4},
        ],
        "shard_size": 8,
        "filters": {"min_words": 50},
    }
    with pytest.raises(YieldError) as error:
        Run(build_config(raw), tmp_path / "run").run()
    message = str(error.value)
    assert message.startswith(
        "the transfer set is empty: transfer.sources[0] (file) kept 0 of 60 (too_short 60); transfer.sources[1] (llm) "
        "kept 0 of "
    )
    assert "nothing to label or distill" in message and "\n" not in message
