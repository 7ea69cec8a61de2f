"""An HTTP service around an ONNX export: GET /health, GET /info, POST /predict, POST /predict/batch, and the
Hugging Face text-classification protocol (artifacts.hf_protocol): `{"inputs": ...}` on POST /predict (Text
Embeddings Inference's shape) and on POST / (the Hub Inference API's, what `InferenceClient` sends).

Torch-free like gendistill.artifacts.inference (fastapi, pydantic, numpy, tokenizers, onnxruntime). The contract
holds for any input (README, "Deploy the student", states it for users):

- Every error is JSON `{"error": "<one line>"}` with content-type application/json: 400 empty batch, 404 unknown
  route, 405 wrong method, 413 too large (a body over max_body_bytes, counted while it is read, chunked uploads
  included, after which the connection is closed; more JSON values than max_texts texts need; too many texts; a
  text over max_chars characters), 415 a body that is not declared as JSON, 422 a body that is not strict JSON
  (invalid UTF-8, NaN/Infinity, numbers that overflow a double, integers over 100 digits, lone surrogates,
  duplicate keys, nesting too deep) or not of the request's shape, or a text that is empty or whitespace only
  (it has nothing to classify; the message names its index), 500 an unexpected failure (no traceback or
  path; the server log has it; the connection is closed). Other refusals leave a kept-alive connection usable.
- The limits bound the memory and work one request can cause before anything is parsed; the word cache is bounded
  in bytes for the server's life; server_config bounds the connections (BoundedH11Protocol: an idle timeout on
  request heads, a maximum number of open connections).
- /info shows no file paths of the exporting machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from gendistill.artifacts import hf_protocol
from gendistill.artifacts.calibration import CalibrationError, check_min_confidence
from gendistill.artifacts.cascade import Fallback, FallbackError, Metrics, Timer
from gendistill.artifacts.inference import Predictor
from gendistill.artifacts.limits import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_TIMEOUT
from gendistill.artifacts.word_cache import DEFAULT_CACHE_BYTES

ROUTES = "GET /health, GET /info, GET /metrics, POST /predict, POST /predict/batch, POST / (Hugging Face protocol)"
MAX_MESSAGE_CHARS = 300
MAX_INT_DIGITS = 100


class PredictRequest(BaseModel):
    text: StrictStr = Field(description="one text to classify")


class BatchRequest(BaseModel):
    texts: list[StrictStr] = Field(description="texts to classify")


class Prediction(BaseModel):
    """One text's answer. `probabilities` are calibrated when the export has a calibration.json; `score` is the
    largest of them. Below the server's min_confidence the text is deferred: `label` is null, `deferred` true."""

    label: str | None
    deferred: bool = False
    score: float
    probabilities: dict[str, float]


class MultiLabelPrediction(BaseModel):
    """One text's answer from a multi-label export: every label whose probability (a sigmoid per label) reaches
    that label's stored threshold, possibly none; `score` is the largest probability."""

    labels: list[str]
    score: float
    probabilities: dict[str, float]


class CascadePrediction(Prediction):
    """One text's answer from a cascade (artifacts.cascade): `model` says who gave the label; a deferred text is
    answered by the fallback, or, when the fallback failed, by the student's own label with `fallback_error`."""

    model: Literal["student", "fallback"] = "student"
    fallback_error: bool = False


class BatchResponse(BaseModel):
    predictions: list[CascadePrediction | Prediction | MultiLabelPrediction]


class RequestError(Exception):
    """A request the service refuses, with its HTTP status and a message that says what to change."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def default_max_body_bytes(max_texts: int, max_chars: int) -> int:
    """An upper bound on a legitimate body: JSON may escape one character (a non-BMP one, as a surrogate pair) as
    12 bytes, plus quotes, commas and some whitespace per text and room for the envelope."""
    return max_texts * (12 * max_chars + 16) + 4096


def _one_line(message: str) -> str:
    """The message on one line (any line break or run of whitespace becomes a space), UTF-8-encodable (a lone
    surrogate becomes "?") and at most MAX_MESSAGE_CHARS characters."""
    text = " ".join(message.split()).encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def error_body(message: str) -> bytes:
    return json.dumps({"error": _one_line(message)}).encode("ascii")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": _one_line(message)}, status_code=status, headers=headers)


class BodyLimit:
    """Pure ASGI middleware: reads the whole request body before the app sees it, counting bytes as they arrive,
    and answers 413 as soon as the count passes `max_bytes`, or at once when a declared Content-Length does.
    Chunked uploads are counted the same way.

    After a 413 the connection is closed, so the rest of the body is never read in full. The close waits a little
    (LINGER_SECONDS, LINGER_BYTES read and dropped, like a web server's lingering close): closing a socket with
    unread input makes the kernel send a reset, which can destroy the answer before a client still uploading has
    received it.
    """

    LINGER_SECONDS = 1.0
    LINGER_BYTES = 4 << 20

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, receive: Receive, send: Send, declared: str | None, more_body: bool) -> None:
        size = f"of {declared} bytes " if declared else ""
        body = error_body(
            f"request body {size}is larger than this service accepts ({self.max_bytes} bytes); "
            "send fewer or shorter texts"
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        # the whole answer, but not yet the end of the response: the server closes the connection at the end
        await send({"type": "http.response.body", "body": body, "more_body": True})
        dropped = 0
        with anyio.move_on_after(self.LINGER_SECONDS):
            while more_body and dropped <= self.LINGER_BYTES:
                message = await receive()
                dropped += len(message.get("body", b""))
                more_body = message["type"] == "http.request" and message.get("more_body", False)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name.lower() == b"content-length" and value.strip().isdigit() and int(value) > self.max_bytes:
                await self._refuse(receive, send, value.strip().decode(), more_body=True)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: there is no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            more_body = message.get("more_body", False)
            if size > self.max_bytes:
                del chunks
                await self._refuse(receive, send, None, more_body)
                return
            chunks.append(chunk)
            if not more_body:
                break
        body = b"".join(chunks)
        del chunks
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # past the body: the server's own messages (disconnect)
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class _Invalid(ValueError):
    """Raised from inside json.loads for a token strict JSON refuses."""


def _reject_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Invalid(f"the number {text[:20]} overflows a double")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Invalid(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Invalid(f"duplicate key {json.dumps(key)[:40]}")
            seen.add(key)
    return result


# A JSON string, or an unterminated one up to the end: every '"' starts a match that ends at the next unescaped '"'
# or at the end, so a scan never restarts inside a string and stays linear.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.S)
# A lone surrogate can only come from a \uD800-\uDFFF escape (strict UTF-8 decoding refuses encoded ones)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def parse_json(body: bytes, max_values: int) -> Any:
    """Strict JSON (RFC 8259, UTF-8) or a RequestError: 413 for more than `max_values` arrays, objects, members
    and elements (counted on the raw text before parsing, so a small body cannot expand into millions of Python
    objects), 422 for anything json.loads alone would let through or fail on."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(422, f"invalid JSON: the body is not UTF-8 (byte {error.start})") from None
    text = text.removeprefix("\ufeff")
    skeleton = _STRING.sub("", text)
    values = sum(skeleton.count(char) for char in "[{,:")
    if values > max_values:
        raise RequestError(413, f"the body holds about {values} JSON values, more than {max_values}; split the batch")
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as error:
        raise RequestError(422, f"invalid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    except _Invalid as error:
        raise RequestError(422, f"invalid JSON: {error}") from None
    except RecursionError:
        raise RequestError(422, "invalid JSON: nested too deeply") from None
    except ValueError as error:  # e.g. int() refusing a number; there should be none left
        raise RequestError(422, f"invalid JSON: {error}") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise RequestError(422, "invalid JSON: a string holds a lone surrogate (a \\ud800-\\udfff escape unpaired)")
    return value


def _check_content_type(value: str | None) -> None:
    """No content type is read as JSON; any other than application/json or application/*+json (UTF-8) is 415."""
    if value is None:
        return
    media, *params = (part.strip().lower() for part in value.split(";"))
    is_json = media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
    charsets = [param.partition("=")[2].strip(" \"'") for param in params if param.startswith("charset")]
    if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
        # what `curl -d 'some text'` sends: say how to send the text instead
        raise RequestError(
            415,
            f"content-type {media!r} is a form, not JSON; send application/json (UTF-8), e.g. "
            """curl -H 'content-type: application/json' -d '{"text": "..."}' URL/predict""",
        )
    if not is_json or any(charset not in ("utf-8", "utf8") for charset in charsets):
        raise RequestError(415, f"content-type {value[:60]!r} is not JSON; send application/json (UTF-8)")


def _describe(errors: list[Any], limit: int = 3) -> str:
    parts = []
    for error in errors[:limit]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    more = f"; and {len(errors) - limit} more" if len(errors) > limit else ""
    return "invalid request: " + "; ".join(parts) + more


_PATH_WORDS = frozenset(
    {"dir", "dirs", "directory", "folder", "path", "paths", "source", "sources", "file", "files", "filename"}
    | {"root", "cwd", "home", "location", "url", "uri"}
)
# Keys whose value names a model or data by where it was found on the exporting machine, in any form: a named
# choice (`init_from: finetuned`), a Hub id or a path, relative ones included (`home/alice/project/enc`), which no
# value shape tells from a Hub id. Their strings are reduced to the last path component.
_SOURCE_WORDS = frozenset({"from", "teacher", "generator", "encoder", "model", "base", "train", "validation", "test"})
_SOURCE_KEYS = frozenset({"unlabeled", "data", "checkpoint"})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_PATH_VALUE = re.compile(r"^(?:/|~|\\\\|[A-Za-z]:[\\/]|\.\.?[\\/]|file:)")
_SEPARATORS = re.compile(r"[\\/]+")


def _key_words(key: Any) -> set[str]:
    return {word.lower() for word in _WORD.findall(key)} if isinstance(key, str) else set()


def _is_path_key(key: Any) -> bool:
    return not _key_words(key).isdisjoint(_PATH_WORDS)


def _is_source_key(key: Any) -> bool:
    return key in _SOURCE_KEYS or not _key_words(key).isdisjoint(_SOURCE_WORDS)


def _is_path_value(value: Any) -> bool:
    return isinstance(value, str) and _PATH_VALUE.match(value) is not None


def _last_component(value: str) -> str:
    """`home/alice/enc` -> `enc`, `C:\\models\\enc\\` -> `enc`, `finetuned` -> `finetuned`."""
    parts = [part for part in _SEPARATORS.split(value) if part]
    return parts[-1] if parts else ""


def _reduced(value: Any) -> Any:
    """A source key's value: its strings (alone or in a list) reduced to their last component, anything else
    filtered like the rest of the metadata."""
    if isinstance(value, str):
        return _last_component(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [_last_component(item) for item in value]
    return public_metadata(value)


def public_metadata(value: Any) -> Any:
    """The export metadata without filesystem paths, at any depth, decided by key first: a key named like a path
    (run_dir, source, model_path, cache_dir, ...) is dropped; a key that names where a model or data came from
    (init_from, teacher, teacher_model, generator, train, ...) keeps only the last component of its strings, since
    a relative path looks like a Hub id. Any other string that looks like a path (absolute, home-relative, ./ or
    ../, drive letter, UNC, file:) is dropped too. Label names are kept as they are (they are the model's output,
    not the machine's). Non-finite numbers become null, which JSON can carry."""
    if isinstance(value, dict):
        return {
            key: item if key == "label_names" else _reduced(item) if _is_source_key(key) else public_metadata(item)
            for key, item in value.items()
            if not _is_path_key(key) and not _is_path_value(item)
        }
    if isinstance(value, list):
        return [public_metadata(item) for item in value if not _is_path_value(item)]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a bound on open connections.

    uvicorn's own settings do not cover an idle client: `timeout_keep_alive` is armed only after a response (a
    connection that never sends a byte is held for ever) and any byte re-arms it (a client sending one header byte
    at a time is held for ever); `limit_concurrency` answers 503 once a request arrives, after the socket was
    accepted, so idle sockets still pile up until the process runs out of file descriptors. Here:

    - a connection must complete a request head within `idle_timeout` seconds of opening or of its last answer,
      however many bytes it trickles, or it is closed;
    - once a head is in, the request (its body, trickled or not, and its answer) must be done within
      `request_timeout` seconds, or the connection is closed: a client that sends a head announcing a large body
      and then one byte a second would otherwise hold a connection, and a request in flight, for ever;
    - past `max_connections` open connections, a new one closes the connection idle the longest (no request in
      flight) to make room, so a fresh client such as a health check is answered at once; if none is idle, the
      new one is closed.

    The limits are class attributes: `bounded_protocol` makes the subclass uvicorn instantiates per connection.
    """

    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_cycle: Any = None
        self._request_deadline: asyncio.TimerHandle | None = None
        self._idle_since = self.loop.time()
        self._arm_deadline()
        open_connections = [c for c in self.connections if not c.transport.is_closing()]
        if len(open_connections) > self.max_connections:
            idle = [c for c in open_connections if c is not self and isinstance(c, BoundedH11Protocol) and c._idle()]
            min(idle, key=lambda c: c._idle_since, default=self).transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self._deadline_cycle:  # a request head came in: from now on the request is timed
            self._cancel_deadline()
            self._deadline_cycle = self.cycle
            if self.cycle is not None and not self.cycle.response_complete:
                self._request_deadline = self.loop.call_later(self.request_timeout, self._on_request_deadline)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._cancel_request_deadline()
        self._idle_since = self.loop.time()
        if not self.transport.is_closing() and self._idle():  # not if a pipelined request started already
            self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self._cancel_request_deadline()
        super().connection_lost(exc)

    def _idle(self) -> bool:
        """No request in flight: none came yet, or the last one is answered."""
        return self.cycle is None or self.cycle.response_complete

    def _arm_deadline(self) -> None:
        self._cancel_deadline()
        self._deadline_cycle = self.cycle
        self._deadline = self.loop.call_later(self.idle_timeout, self._on_deadline)

    def _cancel_deadline(self) -> None:
        self._deadline = _cancelled(getattr(self, "_deadline", None))

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.cycle is self._deadline_cycle and not self.transport.is_closing():
            self.transport.close()

    def _cancel_request_deadline(self) -> None:
        self._request_deadline = _cancelled(getattr(self, "_request_deadline", None))

    def _on_request_deadline(self) -> None:
        self._request_deadline = None
        if self.cycle is not None and not self.cycle.response_complete and not self.transport.is_closing():
            self.transport.close()  # the app reading the body gets a disconnect and stops


def _cancelled(timer: asyncio.TimerHandle | None) -> None:
    """Cancel `timer` if one is armed; None, to store in its place."""
    if timer is not None:
        timer.cancel()


def bounded_protocol(
    idle_timeout: float, max_connections: int, request_timeout: float = DEFAULT_REQUEST_TIMEOUT
) -> type[BoundedH11Protocol]:
    """The BoundedH11Protocol class with these limits, for uvicorn.Config(http=...)."""
    if idle_timeout <= 0 or request_timeout <= 0 or max_connections < 1:
        raise ValueError(
            "idle_timeout and request_timeout must be > 0 and max_connections >= 1, got "
            f"{idle_timeout=}, {request_timeout=}, {max_connections=}"
        )
    limits = {"idle_timeout": idle_timeout, "request_timeout": request_timeout, "max_connections": max_connections}
    return type("BoundedH11Protocol", (BoundedH11Protocol,), limits)


def server_config(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8000,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    **uvicorn_options: Any,
) -> uvicorn.Config:
    """How `gendistill serve` runs the app: uvicorn with the h11 protocol bounded by BoundedH11Protocol (idle
    timeout, request timeout, most open connections); uvicorn's keep-alive timeout is the same idle timeout, and
    request heads are capped by h11 (uvicorn's default, 16 KiB) before the app sees them."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=bounded_protocol(idle_timeout, max_connections, request_timeout),
        timeout_keep_alive=idle_timeout,  # type: ignore[arg-type]  # used as a float by call_later
        **uvicorn_options,
    )


@contextlib.contextmanager
def serving_in_background(app: ASGIApp, **limits: Any) -> Iterator[str]:
    """Run `app` as `gendistill serve` does (server_config; `limits`: idle_timeout, max_connections) on a free
    loopback port in a background thread and yield its base URL; stopped on exit. For tests, benchmarks and
    notebooks that need a real HTTP server beside their own code (a cascade needs two)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app, log_level="critical", lifespan="off", **limits))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start within 30 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def install_error_handlers(app: FastAPI, routes: str) -> None:
    """Every error a service answers is one JSON line (`{"error": ...}`): bad requests name the field, unknown
    routes list `routes`, and an unexpected exception tells the client nothing internal. Shared by the student's
    server and `serve-teacher`, so a cascade sees one error shape from both."""

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, error: RequestError) -> JSONResponse:
        return error_response(error.status, error.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, _describe(list(error.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            message = f"no such route; this service has {routes}"
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "")
            message = f"method {request.method} is not allowed on this route (allowed: {allowed})"
        else:
            message = str(error.detail)
        return error_response(error.status_code, message, headers=error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        # the server log has the traceback (Starlette re-raises after this answer, and uvicorn then closes the
        # connection, which the header announces); the client gets no internals
        return error_response(
            500,
            "internal error; the request was not processed, the server log has the details",
            {"connection": "close"},
        )


def create_app(
    predictor_dir: str | Path,
    max_texts: int = 256,
    max_chars: int = 10_000,
    threads: int | None = None,
    max_body_bytes: int | None = None,
    word_cache_bytes: int = DEFAULT_CACHE_BYTES,
    min_confidence: float | None = None,
    fallback: Fallback | None = None,
) -> FastAPI:
    """The service for the export in `predictor_dir`; loads the model once, at creation. `max_body_bytes`
    (default: default_max_body_bytes(max_texts, max_chars)) caps a request body, enforced while it is read;
    `word_cache_bytes` caps the tokenizer's word cache, which lives as long as the server. With `min_confidence`
    (in (0, 1)), a text whose top calibrated probability is below it is answered as deferred (label null), or,
    with a `fallback` (artifacts.cascade), by the fallback: a cascade, whose answers say which `model` gave them."""
    if min_confidence is not None:
        check_min_confidence(min_confidence)
    if max_texts < 1 or max_chars < 1 or (max_body_bytes is not None and max_body_bytes < 1) or word_cache_bytes < 0:
        raise ValueError(
            f"limits must be >= 1 (word_cache_bytes >= 0), got {max_texts=}, {max_chars=}, {max_body_bytes=}, "
            f"{word_cache_bytes=}"
        )
    predictor = Predictor(predictor_dir, threads=threads, word_cache_bytes=word_cache_bytes)
    if min_confidence is not None and predictor.multi_label:
        raise CalibrationError(
            f"min_confidence: {predictor_dir} is a multi-label export, where each label decides at its own stored "
            "threshold; serve it without --min-confidence"
        )
    if fallback is not None and (min_confidence is None or predictor.multi_label):
        raise CalibrationError(
            "fallback: a cascade needs a single-label export served with a min_confidence (only the texts the "
            "student defers go to the fallback); pass --min-confidence P|stored"
        )
    metrics = Metrics()
    labels = predictor.label_names
    max_body = max_body_bytes or default_max_body_bytes(max_texts, max_chars)
    # a batch of max_texts texts has about 2 * max_texts values ("[", ",", "{", ":"); the rest is slack for
    # extra members a client may add
    max_values = 4 * max_texts + 64
    # no /docs, /redoc or /openapi.json: the docs pages load scripts from a CDN, and a deployment serves the
    # routes it documents (ROUTES) and nothing else
    app = FastAPI(
        title="gendistill",
        description="A distilled student classifier (ONNX)",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=max_body)

    install_error_handlers(app, ROUTES)

    def check(texts: list[str]) -> None:
        if not texts:
            raise RequestError(400, "texts is empty: send at least one text")
        if len(texts) > max_texts:
            raise RequestError(413, f"too many texts: {len(texts)} > {max_texts} per request; split the batch")
        for index, text in enumerate(texts):
            if len(text) > max_chars:
                raise RequestError(413, f"text {index} has {len(text)} characters; the limit is {max_chars}")
            if not text.strip():
                # the student would still answer a label (its prior for no words): refuse rather than guess
                raise RequestError(422, f"text {index} is empty or whitespace only: there is nothing to classify")

    def read_json(content_type: str | None, body: bytes) -> Any:
        _check_content_type(content_type)
        return parse_json(body, max_values)

    def validate(model: type[BaseModel], value: Any) -> Any:
        try:
            return model.model_validate(value)
        except ValidationError as error:
            raise RequestError(422, _describe(error.errors(include_url=False, include_input=False))) from None

    def read(model: type[BaseModel], content_type: str | None, body: bytes) -> Any:
        return validate(model, read_json(content_type, body))

    def predictions(texts: list[str]) -> list[Prediction | MultiLabelPrediction]:
        probabilities = predictor.predict_proba(texts)
        if predictor.multi_label:
            thresholds = np.asarray(predictor.thresholds)
            return [
                MultiLabelPrediction(
                    labels=[labels[i] for i in np.flatnonzero(row >= thresholds)],
                    score=float(row.max()),
                    probabilities={name: float(p) for name, p in zip(labels, row, strict=True)},
                )
                for row in probabilities
            ]
        answers: list[Prediction | MultiLabelPrediction] = []
        for row in probabilities:
            score = float(row.max())
            deferred = min_confidence is not None and score < min_confidence
            answers.append(
                Prediction(
                    label=None if deferred else labels[int(row.argmax())],
                    deferred=deferred,
                    score=score,
                    probabilities={name: float(p) for name, p in zip(labels, row, strict=True)},
                )
            )
        return answers

    def answered(texts: list[str]) -> list[Prediction | MultiLabelPrediction]:
        """predictions(texts), through the cascade when there is a fallback: only the deferred texts leave the
        student; a failed fallback degrades to the student's own label, flagged, never to an error. Counted and
        timed for GET /metrics."""
        with Timer() as timer:
            answers = predictions(texts)
            deferred = [i for i, answer in enumerate(answers) if isinstance(answer, Prediction) and answer.deferred]
            if fallback is not None:
                answers = cascade(texts, answers, deferred)
        by_fallback = sum(isinstance(answer, CascadePrediction) and answer.model == "fallback" for answer in answers)
        escalated = len(deferred) if fallback is not None else 0
        metrics.count(
            student=len(texts) - by_fallback, escalated=escalated, fallback=by_fallback, errors=escalated - by_fallback
        )
        metrics.time("fallback" if escalated else "student", timer.seconds)
        return answers

    def cascade(
        texts: list[str], answers: list[Prediction | MultiLabelPrediction], deferred: list[int]
    ) -> list[Prediction | MultiLabelPrediction]:
        assert fallback is not None
        fallback_labels: list[str | None] = [None] * len(deferred)
        # on a FallbackError every deferred text keeps the student's label, flagged
        with contextlib.suppress(FallbackError):
            if deferred:
                fallback_labels = fallback.classify([texts[i] for i in deferred])
        cascaded = [CascadePrediction(**answer.model_dump()) for answer in answers]
        for i, fallback_label in zip(deferred, fallback_labels, strict=True):
            answer = cascaded[i]
            if fallback_label is not None:
                answer.label, answer.model = fallback_label, "fallback"
            else:  # the student's own label, flagged: a degraded answer beats a failed request
                answer.label = max(answer.probabilities, key=lambda name: answer.probabilities[name])
                answer.fallback_error = True
        return list(cascaded)

    def answer_one(content_type: str | None, body: bytes) -> Prediction | MultiLabelPrediction | list[Any]:
        value = read_json(content_type, body)
        if isinstance(value, dict) and "inputs" in value:  # Text Embeddings Inference's shape
            return answer_tei(validate(hf_protocol.TEIRequest, value))
        request = validate(PredictRequest, value)
        check([request.text])
        return answered([request.text])[0]

    # the standard protocols' default scores: per-label sigmoids for a multi-label export, else the softmax
    probability: hf_protocol.Transform = "sigmoid" if predictor.multi_label else "softmax"

    def scoring_logits(texts: list[str], transform: str) -> np.ndarray:
        """Logits for the standard protocols: a softmax is taken at the stored calibration temperature, so its
        scores are the same probabilities /predict answers."""
        logits = predictor.logits(texts)
        return logits / predictor.temperature if transform == "softmax" else logits

    def answer_tei(request: hf_protocol.TEIRequest) -> list[Any]:
        try:
            texts, single = hf_protocol.tei_texts(request)
        except hf_protocol.PairError as error:
            raise RequestError(422, str(error)) from None
        check(texts)
        transform = "none" if request.raw_scores else probability
        answer = hf_protocol.ranked(hf_protocol.scores(scoring_logits(texts, transform), transform), labels)
        return answer[0] if single else answer

    def answer_hub(content_type: str | None, body: bytes) -> list[Any]:
        request = read(hf_protocol.HubRequest, content_type, body)
        texts = hf_protocol.hub_texts(request)
        check(texts)
        parameters = request.parameters or hf_protocol.HubParameters()
        transform = parameters.function_to_apply or probability
        rows = hf_protocol.scores(scoring_logits(texts, transform), transform)
        return hf_protocol.ranked(rows, labels, parameters.top_k)  # one list per text, even for one text

    def answer_batch(content_type: str | None, body: bytes) -> BatchResponse:
        request = read(BatchRequest, content_type, body)
        check(request.texts)
        return BatchResponse(predictions=answered(request.texts))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    info_body = {
        "labels": labels,
        "metadata": public_metadata(predictor.metadata),
        "limits": {
            "max_texts": max_texts,
            "max_chars": max_chars,
            "max_body_bytes": max_body,
            "word_cache_bytes": word_cache_bytes,
        },
        "min_confidence": min_confidence,  # null: every text is answered
    }

    @app.get("/info")
    def info() -> dict[str, Any]:
        return info_body

    @app.get("/metrics")
    def cascade_metrics() -> dict[str, Any]:
        return {"cascade": fallback is not None, **metrics.to_dict()}

    # parsing, validation and prediction run in the thread pool: a large body must not stall the event loop
    @app.post("/predict", response_model=None)
    async def predict(request: Request) -> Prediction | MultiLabelPrediction | list[Any]:
        body = await request.body()
        return await run_in_threadpool(answer_one, request.headers.get("content-type"), body)

    @app.post("/", response_model=None)
    async def predict_hub(request: Request) -> list[Any]:
        body = await request.body()
        return await run_in_threadpool(answer_hub, request.headers.get("content-type"), body)

    @app.post("/predict/batch", response_model=BatchResponse)
    async def predict_batch(request: Request) -> BatchResponse:
        body = await request.body()
        return await run_in_threadpool(answer_batch, request.headers.get("content-type"), body)

    return app
