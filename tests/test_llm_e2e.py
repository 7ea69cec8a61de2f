"""End to end against a real OpenAI-compatible server: `transformers serve` answering for a tiny random chat LM that
a fixture builds (tests/conftest.py), started once per session on 127.0.0.1. Its answers are noise; the protocol,
the retries, the cache, the resume and the report are real. transformers serve ignores `logprobs` and `n`, so the
llm teacher here takes the sampling fallback (the logprob path is in test_llm_teacher.py and, against llama.cpp's
server, test_llm_llamacpp.py)."""

import json
import signal
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import cli_env, make_rows, write_jsonl
from llm_servers import FaultProxy

from gendistill import Run
from gendistill.config import FilterConfig, build_config
from gendistill.data.task import LabeledSet, TaskData
from gendistill.pipeline.layout import RunLayout
from gendistill.sources.base import SourceContext, TextFilter, list_shards

SECRET = "sk-gendistill-test-0123456789abcdef"


@pytest.fixture()
def small_task(tmp_path):
    """2 labeled texts per class, 2 test texts per class: few enough that every text is a real request."""
    write_jsonl(tmp_path / "data" / "train.jsonl", make_rows(2, 0))
    write_jsonl(tmp_path / "data" / "test.jsonl", make_rows(2, 1))
    return tmp_path / "data"


def llm_source(url, model, api, n, **fields):
    return {
        "type": "llm",
        "endpoint": url,
        "model": str(model),
        "api": api,
        "n": n,
        "texts_per_request": 2,
        "examples_per_request": 1,
        "max_tokens": 16,
        "max_concurrency": 4,
        "timeout": 60,
        **fields,
    }


def pipeline_config(task, url, model, sources, teacher=None):
    return {
        "data": {"train": str(task / "train.jsonl"), "test": str(task / "test.jsonl")},
        "teacher": teacher
        or {"kind": "llm", "endpoint": url, "model": str(model), "samples": 2, "max_tokens": 3, "max_concurrency": 4},
        "transfer": {"sources": sources, "shard_size": 4, "filters": {"min_words": 1}},
        "student": {"init": "random", "embedding_dim": 8, "hidden_dim": 8, "epochs": 2, "batch_size": 8},
        "evaluate": {"speed_examples": 8},
        "device": "cpu",
    }


def test_llm_sources_by_chat_and_completions_labeled_by_a_sampling_llm_teacher(
    small_task, served_lm, tiny_chat_lm_dir, tmp_path
):
    sources = [
        llm_source(served_lm, tiny_chat_lm_dir, "chat", 6),
        llm_source(served_lm, tiny_chat_lm_dir, "completions", 6),
    ]
    config = build_config(pipeline_config(small_task, served_lm, tiny_chat_lm_dir, sources))
    report = Run(config, tmp_path / "run").run()

    chat, completions = report.transfer_set.sources
    for row, api in ((chat, "chat"), (completions, "completions")):
        assert row.type == "llm" and row.kept == 6 and row.details["api"] == api
        assert row.details["requests"] >= 3 and row.details["failed"] == 0
        assert row.details["prompt_tokens"] > 0 and row.details["completion_tokens"] > 0
        agreement = row.details["requested_label_agreement"]
        assert agreement["texts"] == 6 and 0 <= agreement["overall"] <= 1
    for folder in ("00-llm", "01-llm"):
        table = pq.read_table(next(iter(list_shards(tmp_path / "run" / "transfer" / folder))))
        assert table.column_names == ["text", "requested_label"]
    teacher = report.teacher
    assert teacher.kind == "llm" and teacher.soft_labels == "samples" and teacher.params is None
    assert teacher.requests >= 2 * (6 + 12 + 6)  # train + transfer + test texts, two samples each
    assert teacher.accuracy is not None and teacher.examples_per_s > 0
    assert report.student.accuracy is not None
    notes = " ".join(report.notes)
    assert "smoothed votes of 2 sampled answers" in notes and "the server's answer held no log-probabilities" in notes
    assert "requests answered by" in notes
    bodies = [line for line in (tmp_path / "run" / "report.md").read_text().splitlines() if "Note:" in line]
    assert len(bodies) >= 3


def test_a_multi_label_run_through_transformers_serve(tmp_path, served_lm, tiny_chat_lm_dir):
    """The multi-label prompts through a real server: the source asks for the labeled rows' own label sets, the
    teacher's per-label probabilities are smoothed votes of its 2 sampled answers (the random model's answers
    mostly name nothing: then 0.5), and the report scores in micro-F1."""
    from conftest import LABELS

    sets = [["sports"], ["cooking", "weather"], [], ["weather"], ["cooking", "sports"], ["sports"]]
    train = [{"text": f"{' '.join(names) or 'nothing'} text {i}", "label": names} for i, names in enumerate(sets)]
    test = [{"text": f"a {name} story", "label": [name]} for name in LABELS] + [{"text": "plain", "label": []}]
    write_jsonl(tmp_path / "data" / "train.jsonl", train)
    write_jsonl(tmp_path / "data" / "test.jsonl", test)
    sources = [llm_source(served_lm, tiny_chat_lm_dir, "chat", 4)]
    raw = pipeline_config(tmp_path / "data", served_lm, tiny_chat_lm_dir, sources)
    raw["student"]["baseline"] = False
    report = Run(build_config(raw), tmp_path / "run").run()

    assert report.multi_label is True and report.teacher.micro_f1 is not None and report.student.micro_f1 is not None
    assert report.teacher.soft_labels == "samples" and report.teacher.requests >= 2 * (6 + 4 + 4)
    layout = RunLayout(tmp_path / "run")
    logits = np.asarray(pq.read_table(layout.train_logits).column("logits").to_pylist(), dtype=np.float64)
    probabilities = 1 / (1 + np.exp(-logits))
    # (answers naming the label + 0.5) / (valid answers + 1), with 0, 1 or 2 valid answers of 2
    possible = sorted({(k + 0.5) / (v + 1) for v in range(3) for k in range(v + 1)})
    assert all(min(abs(p - q) for q in possible) < 1e-5 for p in probabilities.ravel())
    wanted = {tuple(sorted(LABELS.index(name) for name in names)) for names in sets if names}
    rows = [row for path in list_shards(layout.transfer / "00-llm") for row in pq.read_table(path).to_pylist()]
    assert len(rows) == 4 and all(tuple(row["requested_label"]) in wanted for row in rows)
    assert report.transfer_set.sources[0].details["requested_label_agreement"]["multi_label"] is True


@pytest.mark.slow  # the same start on the fake server is in the default suite (test_llm_pipeline.py)
def test_a_zero_label_start_against_transformers_serve(small_task, served_lm, tiny_chat_lm_dir, tmp_path):
    from conftest import LABELS

    sources = [llm_source(served_lm, tiny_chat_lm_dir, "chat", 6, examples_per_request=3)]
    raw = pipeline_config(small_task, served_lm, tiny_chat_lm_dir, sources)
    raw["data"] = {
        "label_names": LABELS,
        "label_descriptions": {"sports": "games, teams and players"},
        "test": str(small_task / "test.jsonl"),
    }
    report = Run(build_config(raw), tmp_path / "run").run()
    assert report.train_examples == 0 and report.data["gold_labels"] == 0
    assert report.baseline_student is None and report.stages["baseline"].status == "skipped"
    assert any("no gold labels were used" in note for note in report.notes)
    assert report.transfer_set.sources[0].kept == 6 and report.student.accuracy is not None


def test_faults_are_retried_until_every_shard_is_complete(served_lm, tiny_chat_lm_dir, tmp_path):
    faults = {"429": 0.05, "500": 0.05, "reset": 0.05, "malformed": 0.05, "empty": 0.05}
    schedule = ("429", "500", "reset", "slow", "malformed", "empty")
    with FaultProxy(served_lm, faults=faults, schedule=schedule, slow_seconds=6) as proxy:
        spec = llm_source(proxy.url, tiny_chat_lm_dir, "chat", 16, timeout=4, max_retries=8, retry_backoff=0.05)
        raw = {"data": {"train": "unused.jsonl"}, "teacher": {"model": "unused"}, "transfer": {"shard_size": 4}}
        config = build_config({**raw, "transfer": {**raw["transfer"], "sources": [spec]}})
        texts = [row["text"] for row in make_rows(2, 0)]
        task = TaskData(LabeledSet(texts, [0, 1, 2] * 2), None, None, ["cooking", "sports", "weather"])
        layout = RunLayout(tmp_path / "run")
        directory = layout.transfer / "00-llm"
        directory.mkdir(parents=True)
        text_filter = TextFilter(FilterConfig(min_words=1), set(texts))
        ctx = SourceContext(config, layout, task, 0, directory, text_filter, torch.device("cpu"))
        summary = config.transfer.sources[0].build(ctx)
        outcomes = proxy.outcomes()
    shard_texts = [t for path in list_shards(directory) for t in pq.read_table(path).column("text").to_pylist()]
    assert summary.kept == 16 == len(shard_texts) == len(set(shard_texts))
    assert len(list_shards(directory)) == summary.shards  # every shard written whole (4 texts, less the drops)
    details = summary.details
    assert details["failed"] == 0
    expected = {"429": "rate_limited", "500": "server_error", "reset": "connection", "slow": "timeout"}
    expected |= {"malformed": "malformed_json", "empty": "empty_choices"}
    injected = {expected[kind]: count for kind, count in outcomes.items() if kind != "forwarded"}
    assert set(injected) == set(expected.values())  # each kind happened
    for kind, count in injected.items():  # and was counted (a loaded machine may add real timeouts)
        assert details["errors"][kind] == count or (kind == "timeout" and details["errors"][kind] > count)
    assert details["retries"] == sum(details["errors"].values()) and details["retries"] >= 6
    assert details["requests"] == len({entry["key"] for entry in proxy.log})  # each request answered once


def cli(*args, kill_at=None, env_extra=None):
    env = {**cli_env(kill_at), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "gendistill.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_sigkill_during_generation_then_rerun_sends_no_answered_request_and_no_key_is_written(
    task_dir, tiny_teacher_dir, served_lm, tiny_chat_lm_dir, tmp_path
):
    with FaultProxy(served_lm) as proxy:
        spec = llm_source(proxy.url, tiny_chat_lm_dir, "chat", 8, texts_per_request=1, max_concurrency=1)
        spec["api_key_env"] = "GENDISTILL_TEST_LLM_KEY"
        teacher = {"model": str(tiny_teacher_dir), "epochs": 1, "max_length": 32}
        config = pipeline_config(task_dir, proxy.url, tiny_chat_lm_dir, [spec], teacher=teacher)
        config["student"]["baseline"] = False
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        run_dir = tmp_path / "run"
        env = {"GENDISTILL_TEST_LLM_KEY": SECRET}

        killed = cli("run", path, "--run-dir", run_dir, kill_at="llm.answer:5", env_extra=env)
        assert killed.returncode == -9, killed.stderr
        answered_before = set(proxy.answered)
        assert len(answered_before) == 5  # one request in flight at a time: the kill came right after the 5th
        tries_before = len(proxy.log)

        resumed = cli("run", path, "--run-dir", run_dir, env_extra=env)
        assert resumed.returncode == 0, resumed.stderr
        sent_after = {entry["key"] for entry in proxy.log[tries_before:]}
        assert sent_after and not sent_after & answered_before
        headers = proxy.headers
    assert all(h.get("Authorization") == f"Bearer {SECRET}" for h in headers)  # the key was used ...
    report = json.loads((run_dir / "report.json").read_text())
    source = report["transfer_set"]["sources"][0]
    assert source["type"] == "llm" and source["kept"] == 8 and source["details"]["cached"] >= 1  # the cut shard's
    texts = [
        t for p in list_shards(run_dir / "transfer" / "00-llm") for t in pq.read_table(p).column("text").to_pylist()
    ]
    assert len(texts) == 8 == len(set(texts))
    for output in (killed.stdout, killed.stderr, resumed.stdout, resumed.stderr):  # ... and written nowhere
        assert SECRET not in output
    for file in run_dir.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file
    assert "GENDISTILL_TEST_LLM_KEY" in (run_dir / "config.yaml").read_text()
