"""The `llm` transfer source against a fake OpenAI-compatible server on 127.0.0.1 (fast, deterministic): requests go
round the classes, every labeled text is shown as an example, attributes are drawn per request, answers are parsed
and counted, each text keeps the class it was requested for, and a resumed build sends nothing already answered.
The same against the real `transformers serve` is in test_llm_e2e.py."""

from collections import Counter

import pyarrow.parquet as pq
import pytest
import torch
from llm_servers import TOPICS, FakeOpenAI

from gendistill.config import FilterConfig, build_config
from gendistill.data.task import LabeledSet, TaskData
from gendistill.errors import ConfigError
from gendistill.llm.client import LLMServerError
from gendistill.pipeline.layout import RunLayout
from gendistill.sources.base import SourceContext, TextFilter, list_shards, read_shard

LABELS = ["cooking", "sports", "weather"]
LABELED = {label: [f"{label} example {i} with {TOPICS[label][i]}" for i in range(4)] for label in LABELS}


@pytest.fixture()
def fake():
    with FakeOpenAI() as server:
        yield server


def context(run_dir, source: dict, shard_size=8, labeled=True, descriptions=None):
    raw = {
        "data": {"train": "unused.jsonl", "label_descriptions": descriptions},
        "teacher": {"model": "unused"},
        "transfer": {"shard_size": shard_size, "sources": [source]},
    }
    config = build_config(raw)
    texts = [text for label in LABELS for text in LABELED[label]] if labeled else []
    labels = [i for i, label in enumerate(LABELS) for _ in LABELED[label]] if labeled else []
    task = TaskData(LabeledSet(texts, labels), None, None, LABELS)
    layout = RunLayout(run_dir)
    directory = layout.transfer / "00-llm"
    directory.mkdir(parents=True, exist_ok=True)
    text_filter = TextFilter(FilterConfig(min_words=1), set(texts))
    return config.transfer.sources[0], SourceContext(
        config, layout, task, 0, directory, text_filter, torch.device("cpu")
    )


def shard_rows(directory):
    return [row for path in list_shards(directory) for row in pq.read_table(path).to_pylist()]


def test_chat_requests_go_round_the_classes_and_show_every_labeled_text(tmp_path, fake):
    spec = {
        "type": "llm",
        "endpoint": fake.url,
        "model": "fake",
        "n": 24,
        "texts_per_request": 3,
        "examples_per_request": 2,
        "attributes": {"tone": ["calm", "angry"], "length": ["short"]},
    }
    source, ctx = context(tmp_path, spec, descriptions={"sports": "games and teams"})
    summary = source.build(ctx)
    assert summary.kept == 24 and summary.shards == 3
    rows = shard_rows(ctx.directory)
    assert len(rows) == 24 == len({row["text"] for row in rows})
    assert all(count >= 7 for count in Counter(row["requested_label"] for row in rows).values())  # 9 each, 3 cut
    assert all(TOPICS[LABELS[row["requested_label"]]][0] in row["text"] or "story" in row["text"] for row in rows)
    prompts = [request["body"]["messages"][1]["content"] for request in fake.requests]
    assert len(prompts) == 9  # 3 shards x ceil(8 / 3) requests
    for label in LABELS:  # 3 requests per class, 2 examples each: all 4 labeled texts shown before any twice
        shown = Counter(t for p in prompts if f'class "{label}"' in p for t in LABELED[label] if f"- {t}\n" in p)
        assert set(shown) == set(LABELED[label]) and sorted(shown.values()) == [1, 1, 2, 2]
    assert "(games and teams)" in next(p for p in prompts if 'class "sports"' in p)
    assert all("Tone: " in p and "Length: short." in p for p in prompts)
    assert {request["body"]["seed"] for request in fake.requests}.__len__() == 9
    details = summary.details
    assert details["model"] == "fake" and details["api"] == "chat"
    assert (details["requests"], details["cached"], details["failed"], details["retries"]) == (9, 0, 0, 0)
    assert details["lines_dropped"] == {"preamble": 9} and details["texts_parsed"] == 27
    assert details["prompt_tokens"] > 0 and details["completion_tokens"] == 27


def test_a_resumed_build_sends_nothing_already_answered_and_writes_the_same_set(tmp_path, fake):
    spec = {"type": "llm", "endpoint": fake.url, "model": "fake", "n": 20, "texts_per_request": 4}
    source, ctx = context(tmp_path / "a", spec)
    full = source.build(ctx)
    texts = shard_rows(ctx.directory)
    sent = len(fake.requests)
    for path in list_shards(ctx.directory)[1:]:  # a crash after the first shard
        path.unlink()
    source, ctx = context(tmp_path / "a", spec)
    resumed = source.build(ctx)
    assert len(fake.requests) == sent  # every answer came from the request cache
    assert shard_rows(ctx.directory) == texts
    assert resumed.details["cached"] == sent - 2 and resumed.details["requests"] == 2  # shard 0's, as first counted
    assert (resumed.kept, resumed.generated, resumed.drops) == (full.kept, full.generated, full.drops)


def test_completions_continue_a_numbered_list_in_a_zero_label_start(tmp_path, fake):
    spec = {"type": "llm", "endpoint": fake.url, "model": "fake", "n": 6, "api": "completions", "temperature": 0.7}
    source, ctx = context(tmp_path, spec, shard_size=6, labeled=False)
    summary = source.build(ctx)
    assert summary.kept == 6
    bodies = [request["body"] for request in fake.requests]
    assert all(body["prompt"].endswith(":\n1.") and body["stop"] == ["\n\n"] for body in bodies)
    assert {body["temperature"] for body in bodies} == {0.7}
    assert fake.requests[0]["path"] == "completions"


def test_extra_body_is_sent_as_given_and_the_key_as_a_bearer_token(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-123")
    spec = {
        "type": "llm",
        "endpoint": fake.url,
        "model": "fake",
        "n": 3,
        "api_key_env": "FAKE_LLM_KEY",
        "extra_body": {"top_k": 40},
        "request_seed": False,
    }
    source, ctx = context(tmp_path, spec, shard_size=3)
    source.build(ctx)
    request = fake.requests[0]
    assert request["body"]["top_k"] == 40 and "seed" not in request["body"]
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"


def test_preflight_fails_in_one_line(tmp_path, fake, monkeypatch):
    spec = {"type": "llm", "endpoint": fake.url, "model": "fake", "n": 3}
    source, _ = context(tmp_path, {**spec, "api_key_env": "NOT_SET_ANYWHERE"})
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match=r"transfer.sources\[0\].api_key_env: the environment variable NOT_SET_"):
        source.check(None, 0)
    source, _ = context(tmp_path, {**spec, "endpoint": "http://127.0.0.1:9"})
    with pytest.raises(LLMServerError, match=r"transfer.sources\[0\].endpoint http://127.0.0.1:9/v1: no server"):
        source.check(None, 0)
    bad = {**spec, "messages": [{"role": "user", "content": "Write {{ cout }} texts"}]}
    source, _ = context(tmp_path, bad)
    with pytest.raises(ConfigError, match=r"transfer.sources\[0\].messages\[0\]: template error: 'cout' is undefined"):
        source.check(None, 0)
    with pytest.raises(ConfigError, match="`prompt` is the completion template"):
        context(tmp_path, {**spec, "prompt": "x"})


def test_shards_keep_their_drops_and_requested_class_through_the_filter(tmp_path, fake):
    spec = {"type": "llm", "endpoint": fake.url, "model": "fake", "n": 4, "texts_per_request": 2}
    source, ctx = context(tmp_path, spec, shard_size=4)
    ctx.text_filter.config = FilterConfig(min_words=1, max_words=6)  # the fake's texts have 6 words: all pass
    source.build(ctx)
    texts, generated, drops = read_shard(list_shards(ctx.directory)[0])
    assert generated == 4 and len(texts) == 4 and drops.get("surplus", 0) == 0
