"""The HTTP service (artifacts.serve): its endpoints, and its contract under hostile input. Every error is JSON
{"error": "<one line>"}; a body over the size limit is refused while it is read (chunked too); JSON is parsed
strictly; a refused request leaves a kept-alive connection usable; /info shows no file paths. A real uvicorn server
on 127.0.0.1 runs where the transport matters; the fuzz tests use Starlette's in-process client."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import LABELS, labeled, train_tiny_student
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from gendistill.artifacts.export import export_onnx
from gendistill.artifacts.serve import (
    BodyLimit,
    create_app,
    default_max_body_bytes,
    public_metadata,
    server_config,
    serving_in_background,
)
from gendistill.artifacts.word_cache import DEFAULT_CACHE_BYTES
from gendistill.students.classifier import StudentClassifier

JSON_HEADERS = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def served_export(tmp_path_factory) -> tuple[StudentClassifier, Path]:
    """A trained bag student exported from a run directory, its info carrying the run_dir as the pipeline's stages
    record it, so metadata.json holds the exporting machine's paths at the top level and nested in info."""
    root = tmp_path_factory.mktemp("serve")
    run_dir = root / "run"
    student, _ = train_tiny_student("bag", "random", None, max_length=32)  # a random-init student reads no teacher
    student.model.eval()
    student.info.update(run_dir=str(run_dir), kind="student")
    student.save_pretrained(run_dir / "student")
    (run_dir / "report.json").write_text(json.dumps({"config_hash": "abc", "student": {"accuracy": 0.9}}))
    return student, export_onnx(run_dir, root / "onnx")


serving = serving_in_background  # test_cascade imports it from here


def assert_error(status: int, content_type: str | None, text: str | bytes) -> str:
    """The error contract: JSON {"error": "<one line>"} and nothing else; returns the message."""
    assert status >= 400
    assert content_type == "application/json", (status, content_type, text)
    payload = json.loads(text)
    assert isinstance(payload, dict) and list(payload) == ["error"], payload
    message = payload["error"]
    assert isinstance(message, str) and message and len(message.splitlines()) == 1, payload
    assert "Traceback" not in message
    return message


def test_server_endpoints_and_errors(served_export):
    student, export_dir = served_export
    texts = labeled(2, 1)[0]
    with (
        serving(create_app(export_dir, max_texts=4, max_chars=200, threads=1)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        assert client.get("/health").json() == {"status": "ok"}
        info = client.get("/info").json()
        assert info["labels"] == LABELS and info["metadata"]["arch"] == "bag"
        assert info["metadata"]["config_hash"] == "abc" and info["metadata"]["info"]["kind"] == "student"
        assert info["limits"] == {
            "max_texts": 4,
            "max_chars": 200,
            "max_body_bytes": default_max_body_bytes(4, 200),
            "word_cache_bytes": DEFAULT_CACHE_BYTES,
        }

        single = client.post("/predict", json={"text": texts[0]})
        assert single.status_code == 200
        body = single.json()
        assert body["label"] == student.predict([texts[0]])[0]
        assert set(body["probabilities"]) == set(LABELS) and abs(sum(body["probabilities"].values()) - 1) < 1e-5
        batch = client.post("/predict/batch", json={"texts": texts[:4]})
        assert batch.status_code == 200
        assert [p["label"] for p in batch.json()["predictions"]] == student.predict(texts[:4])

        def refused(path: str, status: int, fragment: str, **kwargs) -> None:
            response = client.post(path, **kwargs)
            assert response.status_code == status, response.text
            assert fragment in assert_error(status, response.headers["content-type"], response.text)

        refused("/predict", 422, "text: Field required", json={})
        refused("/predict", 422, "text: Input should be a valid string", json={"text": 3})
        refused("/predict", 413, "limit is 200", json={"text": "x" * 201})
        refused("/predict", 422, "JSON", content=b"{not json", headers=JSON_HEADERS)
        refused("/predict/batch", 422, "texts: Field required", json={"text": "one"})
        refused("/predict/batch", 400, "texts is empty", json={"texts": []})
        refused("/predict/batch", 413, "too many texts: 5 > 4", json={"texts": ["a"] * 5})
        refused("/predict/batch", 413, "text 1 has 201 characters", json={"texts": ["a", "x" * 201]})
        refused("/predict/batch", 422, "texts.1: Input should be a valid string", json={"texts": ["a", None]})
        refused("/predict/batch", 413, "request body", content=b"[" + b" " * 10_000_000 + b"]", headers=JSON_HEADERS)


def test_a_maximal_legitimate_request_fits_the_limits(served_export):
    """The byte limit must not refuse what max_texts and max_chars allow, however the client encodes it: every
    character escaped (a non-BMP one as a 12-byte surrogate pair), pretty-printed."""
    _, export_dir = served_export
    client = TestClient(create_app(export_dir, max_texts=4, max_chars=50, threads=1))
    texts = ["\U0001f600" * 50, "é" * 50, "\\" * 50, "rain " * 10]
    for ensure_ascii in (True, False):
        body = json.dumps({"texts": texts}, ensure_ascii=ensure_ascii, indent=4).encode()
        response = client.post("/predict/batch", content=body, headers=JSON_HEADERS)
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 4
    assert len(json.dumps({"texts": texts}).encode()) > 2 * 4 * 50  # the emoji text alone is 600 bytes escaped


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b'{"text": NaN}', "NaN"),
        (b'{"text": -Infinity}', "Infinity"),
        (b'{"texts": [Infinity]}', "Infinity"),
        (b'{"text": 1e999}', "overflows"),
        (b'{"text": -1.5e400}', "overflows"),
        (b'{"text": "\\ud800"}', "lone surrogate"),
        (b'{"texts": ["ok", "a\\udfffb"]}', "lone surrogate"),
        (b'{"\\udc00": 1, "text": "ok"}', "lone surrogate"),
        (b'{"text": "\\ude00\\ud83d"}', "lone surrogate"),  # a pair in the wrong order
        (b'{"text": ' + b"9" * 5000 + b"}", "digits"),
        (b'{"text": "a", "text": "b"}', "duplicate key"),
        (b'{"text": "\xed\xa0\x80"}', "not UTF-8"),  # a surrogate encoded as UTF-8 bytes
        (b'{"text": "caf\xe9"}', "not UTF-8"),
        (b'{"text": "ok"} trailing', "Extra data"),
        (b"", "Expecting value"),
    ],
)
def test_strict_json(served_export, body, fragment):
    _, export_dir = served_export
    client = TestClient(create_app(export_dir, max_texts=300, max_chars=200, threads=1))
    for path in ("/predict", "/predict/batch"):
        response = client.post(path, content=body, headers=JSON_HEADERS)
        assert response.status_code == 422, response.text
        assert fragment in assert_error(422, response.headers["content-type"], response.text)


def test_deep_nesting_and_value_floods_are_refused_before_they_cost(served_export):
    _, export_dir = served_export
    client = TestClient(create_app(export_dir, max_texts=300, max_chars=200, threads=1))

    def post(body: bytes) -> tuple[int, str]:
        response = client.post("/predict/batch", content=body, headers=JSON_HEADERS)
        return response.status_code, assert_error(response.status_code, response.headers["content-type"], response.text)

    # within the value budget (4 * 300 + 64) but past Python's recursion limit: a parse error, not a crash
    assert post(b"[" * 1200 + b"]" * 1200) == (422, "invalid JSON: nested too deeply")
    # many small values in a small body (each {} would become a Python dict): refused from the raw text
    status, message = post(b"[" + b",".join([b"{}"] * 5000) + b"]")
    assert status == 413 and "JSON values" in message
    status, message = post(b"[" * 100_000)
    assert status == 413 and "JSON values" in message
    # brackets, commas and colons inside strings are text, not values (48,000 of them here); so is an escaped quote
    ok = client.post("/predict/batch", json={"texts": [',:[{ \\" ]}' * 20] * 300})
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["predictions"]) == 300


def test_content_type_must_be_json(served_export):
    _, export_dir = served_export
    client = TestClient(create_app(export_dir, threads=1))
    body = json.dumps({"text": "rain"}).encode()
    for accepted in (None, "application/json", "application/json; charset=UTF-8", "application/problem+json"):
        headers = {} if accepted is None else {"content-type": accepted}
        assert client.post("/predict", content=body, headers=headers).status_code == 200, accepted
    for refused in ("text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"):
        response = client.post("/predict", content=body, headers={"content-type": refused})
        assert response.status_code == 415, refused
        assert "application/json" in assert_error(415, response.headers["content-type"], response.text)


def test_routing_errors_and_crashes_are_json_without_internals(served_export):
    _, export_dir = served_export
    app = create_app(export_dir, threads=1)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(f"secret detail in {export_dir}")

    client = TestClient(app, raise_server_exceptions=False)
    unknown = client.get("/nowhere")
    assert unknown.status_code == 404
    assert "POST /predict/batch" in assert_error(404, unknown.headers["content-type"], unknown.text)
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert "allowed: POST" in assert_error(405, wrong.headers["content-type"], wrong.text)
    put = client.put("/info", content=b"x")
    assert put.status_code == 405
    assert_error(405, put.headers["content-type"], put.text)
    crash = client.get("/boom")
    assert crash.status_code == 500 and crash.headers["connection"] == "close"  # uvicorn closes it after a crash
    message = assert_error(500, crash.headers["content-type"], crash.text)
    assert "secret" not in crash.text and str(export_dir) not in crash.text and "RuntimeError" not in message


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_no_docs_or_openapi_pages(served_export, path):
    """The docs pages load scripts from a CDN and describe the service to anyone: a deployment serves its routes
    only, and these answer the JSON 404 of any unknown route."""
    _, export_dir = served_export
    client = TestClient(create_app(export_dir, threads=1))
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert "no such route" in assert_error(404, response.headers["content-type"], response.text)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_info_shows_no_file_paths(served_export):
    """The real export's paths (top-level source and run_dir, nested info.run_dir) and planted ones at any depth
    and under any path-like key or value are gone; everything else stays."""
    _, export_dir = served_export
    metadata = json.loads((export_dir / "metadata.json").read_text())
    assert metadata["source"] and metadata["run_dir"] and metadata["info"]["run_dir"]  # the defect's inputs
    client = TestClient(create_app(export_dir, threads=1))
    shown = client.get("/info").json()
    assert not [s for s in _strings(shown) if str(export_dir.parent) in s or s.startswith("/")]
    # exactly the paths are gone
    assert shown["metadata"] == {k: v for k, v in metadata.items() if k not in ("source", "run_dir")} | {
        "info": {k: v for k, v in metadata["info"].items() if k != "run_dir"}
    }

    planted = {
        "format": "gendistill-onnx",
        "nested": {
            "deeper": [{"teacherPath": "models/x", "cache_dir": "c", "ok": 1}, "/abs/file", "C:\\Users\\me", "fine"],
            "modelFile": "m.onnx",
            "home": "~/x",
            "where": "../up",
            "unc": "\\\\host\\share",
            "uri": "file:///etc",
            "direction": "bidirectional",  # not a path word, kept
            "note": "a/b is a ratio",  # relative-looking, not under a path key: kept
        },
        "label_names": ["/r/sports", "weather"],  # the model's own labels, kept as they are
        "score": float("nan"),
    }
    assert public_metadata(planted) == {
        "format": "gendistill-onnx",
        "nested": {"deeper": [{"ok": 1}, "fine"], "direction": "bidirectional", "note": "a/b is a ratio"},
        "label_names": ["/r/sports", "weather"],
        "score": None,
    }


def test_info_reduces_relative_model_and_data_paths_by_key():
    """A relative path looks like a Hub id or a word, so the value's shape cannot tell it: the keys that name where
    a model or data came from keep only the last component, at any depth; named choices pass unchanged."""
    metadata = {
        "info": {"init_from": "home/alice/secret_project/enc", "init": "teacher", "kind": "student"},
        "spec": {"arch": "bag", "embedding_dim": 8},
        "teacher": "work/alice/models/minilm",
        "teacher_model": "sentence-transformers/all-MiniLM-L6-v2",
        "generator": {"model": "models\\private\\gpt2-support"},
        "data": {"train": "corp/tickets/train.jsonl", "unlabeled": ["corp/a.jsonl", "corp/b.jsonl"]},
        "testAccuracy": 0.9,
        "model_bytes": 1234,
        "baseline": {"init_from": "finetuned"},
    }
    shown = public_metadata(metadata)
    assert shown == {
        "info": {"init_from": "enc", "init": "teacher", "kind": "student"},
        "spec": {"arch": "bag", "embedding_dim": 8},
        "teacher": "minilm",
        "teacher_model": "all-MiniLM-L6-v2",
        "generator": {"model": "gpt2-support"},
        "data": {"train": "train.jsonl", "unlabeled": ["a.jsonl", "b.jsonl"]},
        "testAccuracy": 0.9,
        "model_bytes": 1234,
        "baseline": {"init_from": "finetuned"},
    }
    for secret in ("alice", "secret_project", "corp", "private", "work/"):
        assert not [s for s in _strings(shown) if secret in s], secret


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (EOF or reset; a timeout means still open)."""
    sock.settimeout(max(within, 0.001))
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _trickle_until_closed(sock: socket.socket, chunk: bytes, within: float) -> tuple[bool, float]:
    """Send `chunk` every 0.2 s until the server closes `sock` or `within` seconds pass: (closed, seconds taken)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            sock.sendall(chunk)
        except OSError:
            return True, time.monotonic() - started
        if _closed_by_peer(sock, 0.2):
            return True, time.monotonic() - started
    return False, time.monotonic() - started


def test_idle_connections_are_bounded_and_timed_out(served_export):
    """The defect: sockets that never send a byte were held for ever, until the file descriptors ran out and /health
    hung. Past max_connections a new connection evicts the one idle longest, so /health answers at once; idle
    sockets, and a client trickling a request head one line at a time, are closed after the idle timeout."""
    _, export_dir = served_export
    idle_timeout, max_connections = 1.0, 40
    with serving(create_app(export_dir, threads=1), idle_timeout=idle_timeout, max_connections=max_connections) as url:
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        trickler = socket.create_connection(address)
        trickler.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        idle = [socket.create_connection(address) for _ in range(300)]
        try:
            started = time.monotonic()
            with httpx.Client(base_url=url, timeout=1.0) as client:
                assert client.get("/health").json() == {"status": "ok"}
            assert time.monotonic() - started < 1.0
            # all the idle sockets are closed: the first ones evicted at once, the rest after the timeout
            deadline = time.monotonic() + idle_timeout + 2.0
            still_open = [sock for sock in idle if not _closed_by_peer(sock, deadline - time.monotonic())]
            assert not still_open, f"{len(still_open)} idle sockets still open"
        finally:
            for sock in idle:
                sock.close()
        # a request head trickled a line every 0.2 s is not a request: closed after the timeout too (it was opened
        # first, so it may already be gone by eviction; then the timeout is tested on a fresh one)
        trickler.close()
        trickler = socket.create_connection(address)
        try:
            trickler.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            closed, elapsed = _trickle_until_closed(trickler, b"X-Slow: y\r\n", idle_timeout + 2.0)
            assert closed and elapsed >= idle_timeout * 0.9
        finally:
            trickler.close()
        with httpx.Client(base_url=url, timeout=1.0) as client:  # still serving
            assert client.get("/health").status_code == 200


def test_a_request_body_trickled_past_the_request_timeout_is_closed(served_export):
    """The defect: once a request head was in, nothing timed the request, so a client announcing a large body and
    sending a byte now and then held a connection and a request in flight for ever. The whole request now has
    `request_timeout` seconds; a normal request on the same server is answered as before."""
    _, export_dir = served_export
    request_timeout = 1.0
    app = create_app(export_dir, threads=1)
    with serving(app, idle_timeout=5.0, request_timeout=request_timeout) as url:
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        slow = socket.create_connection(address)
        try:
            head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            head += b"Content-Length: 4000\r\n\r\n"
            slow.sendall(head + b'{"text": "')
            closed, elapsed = _trickle_until_closed(slow, b"a", request_timeout + 3.0)
            assert closed, "a body trickled past the request timeout kept its connection"
            assert request_timeout * 0.9 <= elapsed < request_timeout + 3.0
        finally:
            slow.close()
        with httpx.Client(base_url=url, timeout=5.0) as client:
            answer = client.post("/predict", json={"text": "a plain request"})
            assert answer.status_code == 200 and "label" in answer.json()


def test_server_config_checks_its_limits(served_export):
    _, export_dir = served_export
    app = create_app(export_dir, threads=1)
    for limits in ({"idle_timeout": 0}, {"max_connections": 0}, {"request_timeout": 0}):
        with pytest.raises(ValueError, match="idle_timeout and request_timeout must be > 0 and max_connections >= 1"):
            server_config(app, **limits)


def test_create_app_checks_its_limits(served_export):
    _, export_dir = served_export
    for limits in ({"max_texts": 0}, {"max_chars": 0}, {"max_body_bytes": 0}, {"word_cache_bytes": -1}):
        with pytest.raises(ValueError, match="limits must be >= 1"):
            create_app(export_dir, threads=1, **limits)


class CountingApp:
    """ASGI wrapper: how many body bytes the server handed to the app."""

    def __init__(self, app):
        self.app, self.received = app, 0

    async def __call__(self, scope, receive, send):
        async def counted():
            message = await receive()
            self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def test_chunked_upload_over_the_limit_is_refused_while_it_is_read(served_export):
    """A chunked body (no Content-Length) of 64 MiB against a 50 kB limit: 413 JSON and a closed connection once
    the limit is passed; the client has sent only a small part when the answer comes, the server read little more
    than the limit."""
    _, export_dir = served_export
    limit, chunk, planned = 50_000, b" " * 16_384, 4096
    app = CountingApp(create_app(export_dir, max_texts=4, max_chars=200, threads=1, max_body_bytes=limit))
    consumed = 0

    def body() -> Iterator[bytes]:
        nonlocal consumed
        for _ in range(planned):
            consumed += 1
            yield chunk

    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        started = time.monotonic()
        response = client.post("/predict/batch", content=body(), headers=JSON_HEADERS)
        elapsed = time.monotonic() - started
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.request.headers
        assert response.status_code == 413
        assert "larger than this service accepts (50000 bytes)" in assert_error(
            413, response.headers["content-type"], response.text
        )
        assert response.headers["connection"] == "close"
        assert consumed * len(chunk) > limit  # the limit was passed ...
        assert consumed < planned // 4, consumed  # ... and the answer came long before the body was sent
        # the server read the limit, then about what it drops while it lingers before closing (one read can be
        # several 64 KiB segments)
        assert app.received <= limit + BodyLimit.LINGER_BYTES + (1 << 20), app.received
        assert elapsed < 10
        # the server is fine afterwards
        assert client.post("/predict", json={"text": "rain"}).status_code == 200


def test_declared_content_length_over_the_limit_is_refused_before_reading(served_export):
    _, export_dir = served_export
    app = CountingApp(create_app(export_dir, max_texts=4, max_chars=200, threads=1, max_body_bytes=1000))
    with serving(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000"
            started = time.monotonic()
            sock.sendall(head + b"\r\n\r\n" + b"{" * 100)  # the body barely begins
            received = sock.recv(65_536)
            answered = time.monotonic() - started
            while chunk := sock.recv(65_536):  # then the server closes the connection
                received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
    assert "of 10000000 bytes" in assert_error(413, "application/json", payload)
    assert answered < BodyLimit.LINGER_SECONDS / 2  # at once, not after waiting for the body
    assert app.received <= 100  # nothing but what was sent


def test_a_refused_request_keeps_the_connection_alive(served_export):
    """The defect: a body the app crashed on got a plain-text 500 and the next request on that kept-alive
    connection was reset. Now each refusal is answered on the same connection, which then serves a good request."""
    _, export_dir = served_export
    bad = [
        ("POST", "/predict", b'{"text": NaN}', 422),
        ("POST", "/predict", b'{"text": Infinity}', 422),
        ("POST", "/predict", b'{"text": 1e999}', 422),
        ("POST", "/predict/batch", b'{"texts": ["\\ud800"]}', 422),
        ("POST", "/predict", b'{"text": ' + b"1" * 5000 + b"}", 422),
        ("POST", "/predict", b"[" * 3000 + b"]" * 3000, 413),
        ("POST", "/predict", b"\xff\xfe", 422),
        ("POST", "/predict/batch", b'{"texts": []}', 400),
        ("POST", "/predict/batch", json.dumps({"texts": ["a"] * 9}).encode(), 413),
        ("POST", "/predict", json.dumps({"text": "x" * 201}).encode(), 413),
        ("GET", "/predict", None, 405),
        ("POST", "/nowhere", b"{}", 404),
    ]
    with serving(create_app(export_dir, max_texts=4, max_chars=200, threads=1)) as url:
        connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=10)
        connection.connect()
        sock = connection.sock
        try:
            for method, path, body, status in bad:
                connection.request(method, path, body=body, headers=JSON_HEADERS)
                response = connection.getresponse()
                payload = response.read()
                assert response.status == status, (path, body[:40] if body else body, payload)
                assert_error(status, response.getheader("content-type"), payload)
                assert not response.will_close and connection.sock is sock, (path, body and body[:40])
                connection.request("POST", "/predict", body=b'{"text": "rain and wind"}', headers=JSON_HEADERS)
                good = connection.getresponse()
                assert good.status == 200 and json.loads(good.read())["label"] in LABELS
                assert connection.sock is sock
        finally:
            connection.close()


# --- fuzzing: whatever arrives, no 5xx, and every non-2xx is {"error": str} ---

HOSTILE_TOKENS = [
    b"NaN",
    b"-Infinity",
    b"Infinity",
    b"1e999",
    b"-1e999",
    b"9" * 400,
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b"\xed\xa0\x80",
    b"\xff",
    b"\x00",
    b"[" * 2000,
    b"{" * 50,
    b'"\\',
    b'"',
    b",",
    b":",
    b"}",
    b"]",
    b"\\u0000",
    b" " * 5000,  # pushes the body over its 4096-byte limit
]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/ld+json",
    "text/plain",
    "application/json; charset=utf-16",
    "multipart/form-data; boundary=x",
    "",
]
characters = st.characters() | st.characters(categories=["Cs"])  # lone surrogates too
texts = st.text(characters, max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,  # floats include nan and inf
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)
shaped = st.fixed_dictionaries({"text": texts | json_values}) | st.fixed_dictionaries(
    {"texts": st.lists(texts | json_values, max_size=6)}
)
# requests within the fuzz client's limits (4 texts of 50 characters), so that the success path is fuzzed too
acceptable = (
    st.fixed_dictionaries({"text": st.text(max_size=50)})
    | st.fixed_dictionaries({"texts": st.lists(st.text(max_size=50), min_size=1, max_size=4)})
    | st.fixed_dictionaries(  # the Hugging Face protocol (POST /predict as TEI, POST / as the Hub API)
        {"inputs": st.text(max_size=50) | st.lists(st.text(max_size=50), min_size=1, max_size=4)}
    )
)


@st.composite
def json_bodies(draw) -> bytes:
    value = draw(acceptable | shaped | json_values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1])))
    body = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8
    if draw(st.booleans()):  # splice a hostile token in anywhere
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from(HOSTILE_TOKENS)) + body[at:]
    return body


def _strictly_valid(body: bytes) -> Any:
    """An independent oracle: the value when `body` is strict JSON, else None."""

    def refuse(_: str) -> None:
        raise ValueError

    try:
        value = json.loads(body.decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError):
        return None
    for item in _strings(value):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return value


@pytest.fixture(scope="module")
def fuzz_client(served_export) -> TestClient:
    # raise_server_exceptions: an exception escaping the app fails the test, on top of the 5xx check
    return TestClient(create_app(served_export[1], max_texts=4, max_chars=50, threads=1, max_body_bytes=4096))


def _check_contract(response: httpx.Response, path: str, body: bytes) -> None:
    event(f"status {response.status_code}")  # shown by pytest --hypothesis-show-statistics
    assert response.status_code < 500, (path, body[:200], response.text)
    if not 200 <= response.status_code < 300:
        assert_error(response.status_code, response.headers.get("content-type"), response.content)
        return
    value = _strictly_valid(body)
    assert isinstance(value, dict), body[:200]  # a 2xx only for strict JSON
    payload = response.json()
    if "inputs" in value:  # lists of {label, score}: one per text, or the one text's own for TEI
        one = isinstance(value["inputs"], str)
        rows = [payload] if one and path == "/predict" else payload
        assert len(rows) == (1 if one else len(value["inputs"]))
        for row in rows:
            assert sorted(item["label"] for item in row) == LABELS and abs(sum(i["score"] for i in row) - 1) < 1e-4
        return
    predictions = [payload] if path == "/predict" else payload["predictions"]
    assert len(predictions) == (1 if path == "/predict" else len(value["texts"]))
    for prediction in predictions:
        assert prediction["label"] in LABELS and abs(sum(prediction["probabilities"].values()) - 1) < 1e-4


FUZZ = settings(
    max_examples=500,
    deadline=None,
    database=None,  # write nothing into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(
    body=json_bodies(),
    path=st.sampled_from(["/predict", "/predict/batch", "/"]),
    content_type=st.sampled_from([None, "application/json"]) | st.sampled_from(CONTENT_TYPES),
)
def test_fuzz_json_like_bodies(fuzz_client, body, path, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    _check_contract(fuzz_client.post(path, content=body, headers=headers), path, body)


@FUZZ
@given(
    body=st.binary(max_size=300) | st.builds(bytes.__add__, st.binary(max_size=50), st.sampled_from(HOSTILE_TOKENS)),
    path=st.sampled_from(["/predict", "/predict/batch", "/", "/info", "/nowhere"]),
    method=st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE", "PATCH"]),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_fuzz_raw_bytes(fuzz_client, body, path, method, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    response = fuzz_client.request(method, path, content=body, headers=headers)
    if len(body) > 4096:  # the body limit applies before routing
        assert response.status_code == 413
        assert_error(413, response.headers.get("content-type"), response.content)
    elif path == "/info" and method == "GET":
        assert response.status_code == 200 and "labels" in response.json()
    elif path in ("/predict", "/predict/batch", "/") and method == "POST":
        _check_contract(response, path, body)
    else:
        assert response.status_code in (404, 405), response.text
        assert_error(response.status_code, response.headers.get("content-type"), response.content)


def test_text_embeddings_inference_predict_shape(served_export):
    """POST /predict with `inputs`, as TEI serves a classifier: one text -> [{label, score}] sorted by score; a
    batch (strings, or TEI's one-string lists) -> one such list per text; raw_scores -> logits."""
    student, export_dir = served_export
    client = TestClient(create_app(export_dir, max_texts=4, max_chars=200, threads=1))
    texts = labeled(2, 1)[0][:3]
    expected = student.predict_proba(texts)
    single = client.post("/predict", json={"inputs": texts[0]})
    assert single.status_code == 200, single.text
    answer = single.json()
    assert [item["label"] for item in answer] == [LABELS[i] for i in np.argsort(-expected[0], kind="stable")]
    assert [set(item) for item in answer] == [{"label", "score"}] * len(LABELS)
    np.testing.assert_allclose(
        sorted((item["score"] for item in answer), reverse=True), sorted(expected[0])[::-1], atol=1e-5
    )
    for inputs in (texts, [[text] for text in texts]):
        batch = client.post("/predict", json={"inputs": inputs, "truncate": True})
        assert batch.status_code == 200, batch.text
        assert [rows[0]["label"] for rows in batch.json()] == student.predict(texts)
        assert all(abs(sum(item["score"] for item in rows) - 1) < 1e-5 for rows in batch.json())
    raw = client.post("/predict", json={"inputs": texts[0], "raw_scores": True}).json()
    logits = student.logits([texts[0]])[0]
    np.testing.assert_allclose(sorted(item["score"] for item in raw), sorted(logits), atol=1e-4)
    pair = client.post("/predict", json={"inputs": [["a text", "its pair"]]})
    assert pair.status_code == 422 and "not pairs" in assert_error(422, pair.headers["content-type"], pair.text)
    wrong = client.post("/predict", json={"inputs": 3})
    assert wrong.status_code == 422 and "inputs" in assert_error(422, wrong.headers["content-type"], wrong.text)


def test_huggingface_hub_inference_client_classifies_against_the_server(served_export, monkeypatch):
    """The real `InferenceClient(base_url=URL).text_classification` against `gendistill serve` on 127.0.0.1: it
    POSTs {"inputs", "parameters"} to the base URL itself and reads a list of {label, score} per text."""
    import huggingface_hub
    from huggingface_hub import InferenceClient

    student, export_dir = served_export
    text = labeled(2, 1)[0][0]
    expected = student.predict_proba([text])[0]
    # InferenceClient refuses to run offline; this URL is local, so no network is used
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with serving(create_app(export_dir, max_texts=4, max_chars=200, threads=1)) as url:
        client = InferenceClient(base_url=url)
        answer = client.text_classification(text)
        assert [item.label for item in answer] == [LABELS[i] for i in np.argsort(-expected, kind="stable")]
        np.testing.assert_allclose([item.score for item in answer], np.sort(expected)[::-1], atol=1e-5)
        top = client.text_classification(text, top_k=1, function_to_apply="sigmoid")
        logit = student.logits([text])[0].max()
        assert len(top) == 1 and top[0].label == answer[0].label
        assert abs(top[0].score - 1 / (1 + np.exp(-logit))) < 1e-4
        # the same route, by hand: a batch gets one list per text; a bad parameter is a one-line 422
        with httpx.Client(base_url=url, timeout=30) as http:
            batch = http.post("/", json={"inputs": [text, text], "parameters": {"top_k": 2}}).json()
            assert len(batch) == 2 and all(len(rows) == 2 for rows in batch)
            bad = http.post("/", json={"inputs": text, "parameters": {"function_to_apply": "relu"}})
            assert bad.status_code == 422
            assert "function_to_apply" in assert_error(422, bad.headers["content-type"], bad.text)


@pytest.mark.parametrize(
    ("path", "body", "index"),
    [
        ("/predict", {"text": ""}, 0),
        ("/predict", {"text": " \n\t "}, 0),
        ("/predict/batch", {"texts": ["rain today", "\u2003"]}, 1),
        ("/predict", {"inputs": ["rain today", "goal", ""]}, 2),
        ("/", {"inputs": ["   "]}, 0),
    ],
)
def test_an_empty_text_is_refused_naming_its_index(served_export, path, body, index):
    _, export_dir = served_export
    client = TestClient(create_app(export_dir, threads=1))
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    message = assert_error(422, response.headers["content-type"], response.text)
    assert f"text {index} is empty or whitespace only" in message


def test_predictor_and_cli_refuse_an_empty_text(served_export):
    from typer.testing import CliRunner

    from gendistill.artifacts.inference import Predictor
    from gendistill.cli import app
    from gendistill.data.texts import EmptyTextError

    _, export_dir = served_export
    predictor = Predictor(export_dir, threads=1)
    with pytest.raises(EmptyTextError, match=r"texts\[1\] is empty or whitespace only"):
        predictor.predict(["rain today", "  "])
    assert isinstance(EmptyTextError("x"), ValueError)
    result = CliRunner().invoke(app, ["predict", str(export_dir), "rain today", ""])
    assert result.exit_code == 2, result.output
    assert "texts[1] is empty" in result.output and "Traceback" not in result.output


def test_a_form_body_gets_415_saying_to_send_json(served_export):
    """`curl -d 'some text' URL/predict` sends application/x-www-form-urlencoded: refused with how to send JSON."""
    _, export_dir = served_export
    client = TestClient(create_app(export_dir, threads=1))
    for path in ("/predict", "/predict/batch", "/"):
        response = client.post(
            path, content=b"the team scored", headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code == 415
        message = assert_error(415, response.headers["content-type"], response.text)
        assert "is a form, not JSON" in message and "content-type: application/json" in message
