"""The LLM client on an httpx MockTransport (no network): what is retried and how, what is not, the request cache
and the counters. The same behaviours against a real server behind a fault-injecting proxy are in test_llm_e2e.py."""

import asyncio
import json

import httpx
import pytest

from gendistill.config import build_config
from gendistill.errors import ConfigError
from gendistill.llm.cache import RequestCache
from gendistill.llm.client import Client, LLMServerError, Request, RequestFailed, RequestRejected, retry_after
from gendistill.llm.settings import ServedModel


def answer(content="1. a text", prompt_tokens=10, completion_tokens=5):
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


def make_client(handler, tmp_path=None, **settings):
    served = ServedModel(endpoint="http://llm.test/v1", model="m", **{"retry_backoff": 0.01, **settings})
    cache = RequestCache(tmp_path / "cache.sqlite") if tmp_path else None
    client = Client(served, cache, "test source", transport=httpx.MockTransport(handler))
    delays = []

    async def sleep(seconds):
        delays.append(seconds)

    client.sleep = sleep
    return client, delays


def requests(n):
    return [
        Request("chat/completions", {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]})
        for i in range(n)
    ]


def scripted(outcomes):
    """A handler answering each request body with the next outcome in its script (then with a good answer)."""
    seen: dict[str, int] = {}

    async def handle(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        attempt = seen.get(body, 0)
        seen[body] = attempt + 1
        outcome = outcomes[attempt] if attempt < len(outcomes) else "ok"
        if outcome == "ok":
            return httpx.Response(200, json=answer(json.loads(body)["messages"][0]["content"]))
        if outcome == "429":
            return httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"message": "slow down"}})
        if outcome == "429ms":
            return httpx.Response(429, headers={"retry-after-ms": "250"})
        if outcome == "500":
            return httpx.Response(500, text="boom")
        if outcome == "timeout":
            raise httpx.ReadTimeout("too slow", request=request)
        if outcome == "reset":
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        if outcome == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        if outcome == "malformed":
            return httpx.Response(200, content=b'{"choices": [', headers={"content-type": "application/json"})
        if outcome == "empty":
            return httpx.Response(200, json={"choices": []})
        raise AssertionError(outcome)

    handle.seen = seen
    return handle


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        ("500", "server_error"),
        ("timeout", "timeout"),
        ("reset", "connection"),
        ("refused", "connection"),
        ("malformed", "malformed_json"),
        ("empty", "empty_choices"),
        ("429", "rate_limited"),
    ],
)
def test_each_transient_failure_is_retried_and_counted(outcome, kind):
    client, _ = make_client(scripted([outcome, outcome]))
    answers = client.run(requests(3))
    assert [a["choices"][0]["message"]["content"] for a in answers] == ["q0", "q1", "q2"]
    usage = client.usage
    assert (usage.requests, usage.retries, usage.attempts, usage.failed) == (3, 6, 9, 0)
    assert usage.errors == {kind: 6}
    assert (usage.prompt_tokens, usage.completion_tokens) == (30, 15)


def test_backoff_grows_with_jitter_and_retry_after_is_honoured():
    client, delays = make_client(scripted(["500", "500", "500", "429", "429ms"]), retry_backoff=1.0)
    client.run(requests(1))
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 2.0 <= delays[2] <= 4.0  # 2^k, half jittered
    assert delays[3:] == [2.0, 0.25]  # Retry-After: 2 and retry-after-ms: 250, as the server asked


def test_retry_after_forms():
    assert retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert retry_after(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # in the past
    assert retry_after(httpx.Headers({"Retry-After": "86400"})) == 300.0  # capped
    assert retry_after(httpx.Headers({})) is None


def test_a_request_failing_every_retry_fails_the_batch_after_the_others_are_answered(tmp_path):
    def handler(request):
        if b"q1" in request.content:
            return httpx.Response(503)
        return httpx.Response(200, json=answer())

    client, _ = make_client(handler, tmp_path, max_retries=2)
    with pytest.raises(RequestFailed, match=r"test source: a request failed after 2 retries \(last: HTTP 503\)"):
        client.run(requests(3))
    assert (client.usage.requests, client.usage.failed, client.usage.errors["server_error"]) == (2, 1, 3)
    assert len(client.cache) == 2  # the answered two are kept: a rerun does not pay for them


def test_a_refused_request_is_not_retried():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(422, json={"detail": "Unexpected fields in the request: {'logprobs'}"})

    client, _ = make_client(handler)
    with pytest.raises(RequestRejected, match="HTTP 422: Unexpected fields in the request") as error:
        client.run(requests(1))
    assert error.value.status == 422 and len(calls) == 1


def test_a_refused_key_is_a_server_error_that_names_the_variable_not_the_key(monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-very-secret")

    def handler(request):
        assert request.headers["Authorization"] == "Bearer sk-very-secret"
        return httpx.Response(401, json={"error": {"message": "bad key sk-very-secret"}})

    client, _ = make_client(handler, api_key_env="MY_LLM_KEY")
    with pytest.raises(LLMServerError) as error:
        client.run(requests(1))
    assert "MY_LLM_KEY" in str(error.value) and "sk-very-secret" not in str(error.value)


def test_cached_answers_are_not_sent_again(tmp_path):
    handler = scripted([])
    client, _ = make_client(handler, tmp_path)
    first = client.run(requests(3))
    client.cache.close()
    again, _ = make_client(handler, tmp_path)
    assert again.run(requests(4)) == [*first, answer("q3")]
    assert (again.usage.cached, again.usage.requests) == (3, 1)
    assert all(count == 1 for count in handler.seen.values())


def test_a_cached_answer_the_caller_rejects_is_asked_again(tmp_path):
    client, _ = make_client(scripted([]), tmp_path)
    client.run(requests(1))
    strict, _ = make_client(scripted([]), tmp_path, max_retries=0)
    with pytest.raises(RequestFailed):
        strict.run(requests(1), validate=lambda a: "no_logprobs")
    assert strict.usage.cached == 0 and strict.usage.errors == {"no_logprobs": 1}


def test_the_same_request_twice_in_a_batch_is_sent_once():
    handler = scripted([])
    client, _ = make_client(handler)
    same = requests(1) * 3
    assert len(client.run(same)) == 3 and client.usage.requests == 1


def test_concurrency_is_bounded():
    in_flight, peak = [0], [0]

    async def handler(request):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.01)
        in_flight[0] -= 1
        return httpx.Response(200, json=answer())

    client, _ = make_client(handler, max_concurrency=3)
    client.run(requests(12))
    assert peak[0] == 3


def test_the_client_runs_inside_a_running_event_loop():
    client, _ = make_client(scripted([]))

    async def main():
        return client.run(requests(2))

    assert len(asyncio.run(main())) == 2


def test_endpoint_gets_v1_and_the_key_variable_must_be_a_name():
    assert ServedModel(endpoint="http://127.0.0.1:8000", model="m").endpoint == "http://127.0.0.1:8000/v1"
    assert ServedModel(endpoint="https://api.example.com/v1/", model="m").endpoint == "https://api.example.com/v1"
    with pytest.raises(ValueError, match="http"):
        ServedModel(endpoint="127.0.0.1:8000", model="m")
    raw = {"data": {"train": "t.jsonl"}, "teacher": {"kind": "llm", "endpoint": "http://x", "model": "m"}}
    with pytest.raises(ConfigError, match="must name an environment variable") as error:
        build_config(raw, ["teacher.api_key_env=sk-abc123"])
    assert "sk-abc123" not in str(error.value).replace("--set teacher.api_key_env=sk-abc123", "")
