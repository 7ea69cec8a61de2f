"""The `llm` transfer source against a fake OpenAI-compatible server on 127.0.0.1 (fast, deterministic): requests go
round the classes, every labeled text is shown as an example, attributes are drawn per request, answers are parsed
and counted, each text keeps the class it was requested for, and a resumed build sends nothing already answered.
The same against the real `transformers serve` is in test_llm_e2e.py."""

import threading
from collections import Counter

import pyarrow.parquet as pq
import pytest
import torch
from llm_servers import TOPICS, FakeOpenAI, FaultProxy

from gendistill.config import FilterConfig, build_config
from gendistill.data.task import LabeledSet, TaskData
from gendistill.errors import ConfigError, YieldError
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


def build_within(source, ctx, seconds=120):
    """`source.build(ctx)`'s summary or error, failing (not hanging) if it is still drawing after `seconds`."""
    outcome = {}

    def target():
        try:
            outcome["summary"] = source.build(ctx)
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"the source was still drawing after {seconds} s"
    return outcome.get("summary"), outcome.get("error")


def test_a_model_whose_answers_hold_no_text_stops_after_200_texts_asked(tmp_path):
    """Empty answers parse to no text at all: counted by the texts asked, the source still stops (it used to draw
    forever: its budget counted the texts it got)."""
    with FakeOpenAI(writes="") as server:
        spec = {"type": "llm", "endpoint": server.url, "model": "fake", "n": 120, "texts_per_request": 5}
        source, ctx = context(tmp_path, spec, shard_size=40)
        summary, error = build_within(source, ctx)
        assert summary is None and isinstance(error, YieldError)
        assert len(server.requests) == 40  # 5 shards of 8 requests: 200 texts asked, not the budget's 1,200
    message = str(error)
    assert message.startswith("transfer.sources[0] (llm): stopped early: kept 0 of the 200 texts drawn toward n=120")
    assert "fake was asked for 200 texts in 40 tries (0 of them retries) and 0 cached answers, and wrote 0" in message
    assert "40 answers were empty" in message and "\n" not in message


def test_min_yield_0_spends_the_budget_and_ends_even_when_no_answer_holds_a_text(tmp_path):
    with FakeOpenAI(writes="") as server:
        spec = {"type": "llm", "endpoint": server.url, "model": "fake", "n": 20, "texts_per_request": 4}
        source, ctx = context(tmp_path, {**spec, "min_yield": 0}, shard_size=8)
        summary, error = build_within(source, ctx)
        assert error is None and summary.kept == 0 and summary.note
        assert len(server.requests) == 50  # max(10 n, n + 10 shards) = 200 texts asked, 4 per request
        assert summary.details["texts_asked"] == 200 and summary.details["empty_answers"] == 50


def test_the_texts_asked_count_every_try_of_a_request(tmp_path, fake):
    with FaultProxy(fake.url, schedule=("500", "500")) as proxy:
        spec = {"type": "llm", "endpoint": proxy.url, "model": "fake", "n": 8, "texts_per_request": 4}
        source, ctx = context(tmp_path, {**spec, "retry_backoff": 0}, shard_size=8)
        details = source.build(ctx).details
    assert (details["requests"], details["retries"], details["attempts"]) == (2, 2, 4)
    assert details["texts_asked"] == 16 and details["texts_parsed"] == 8  # 2 requests of 4 texts, each sent twice
    assert read_shard_asked(ctx.directory) == [16]


def read_shard_asked(directory):
    from gendistill.sources.base import shard_asked

    return [shard_asked(path) for path in list_shards(directory)]


def test_a_rerun_after_a_low_yield_stop_sends_nothing_and_min_yield_0_resumes_from_the_cache(tmp_path):
    with FakeOpenAI(writes="\n".join(["great"] * 5)) as server:  # one-word lines: kept once, then a duplicate
        spec = {"type": "llm", "endpoint": server.url, "model": "fake", "n": 30, "texts_per_request": 5}
        source, ctx = context(tmp_path, spec, shard_size=50)
        with pytest.raises(YieldError, match=r"kept 1 of the 200 texts drawn .* duplicate 199; .* and wrote 200\."):
            source.build(ctx)
        assert len(server.requests) == 40
        source, ctx = context(tmp_path, spec, shard_size=50)
        with pytest.raises(YieldError, match="kept 1 of the 200 texts drawn"):
            source.build(ctx)
        assert len(server.requests) == 40  # the shards kept say it all: nothing is asked again
        source, ctx = context(tmp_path, {**spec, "min_yield": 0}, shard_size=50)
        summary = source.build(ctx)  # resumes after the 4 shards: only the rest of the budget is asked
        assert summary.kept == 1 and summary.note and len(server.requests) == 110  # 550 texts asked: 11 shards
        for path in list_shards(ctx.directory):
            path.unlink()
        source, ctx = context(tmp_path, {**spec, "min_yield": 0}, shard_size=50)
        assert source.build(ctx).details["cached"] == 110 and len(server.requests) == 110  # all from the cache
