"""Many small requests to an OpenAI-compatible server, with bounded concurrency, retries and counters.

httpx does the HTTP (one `AsyncClient` per batch, at most `max_concurrency` requests in flight); this module decides
what an answer is and what to do when there is none:
- retried, with exponential backoff and jitter: 429 (after the server's `Retry-After` / `retry-after-ms` when it
  sends one), 408 and every 5xx, timeouts, refused or dropped connections, bodies that are not JSON, answers
  without choices, and answers the caller's `validate` rejects (e.g. no log-probabilities where they were asked);
- not retried: any other 4xx, which means the server refuses the request as written (`RequestRejected`, so that a
  caller can learn what a server supports);
- a request still unanswered after `max_retries` retries fails the batch (`RequestFailed`) once every other
  request of the batch has finished: the answers already received are in the cache, so rerunning the same
  command resumes without paying for them again.
The API key is sent as a Bearer header and appears in no message, log or file. httpx is the `gendistill[llm]`
extra: it is imported on the first request, so that the sources and teachers that use this module import without it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, fields
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from gendistill.errors import ConfigError, GendistillError, MissingExtra
from gendistill.io import redact
from gendistill.llm.cache import RequestCache, request_key
from gendistill.training.checkpoint import kill_point

if TYPE_CHECKING:
    import httpx

    from gendistill.llm.settings import ServedModel

MAX_DELAY = 60.0  # seconds: the longest backoff between two tries
MAX_RETRY_AFTER = 300.0  # seconds: a server's Retry-After beyond this is cut to it
T = TypeVar("T")


class LLMServerError(GendistillError):
    """The server could not be used (unreachable, or it refused the key)."""


class RequestFailed(GendistillError):
    """A request got no usable answer after every retry."""


class RequestRejected(RequestFailed):
    """The server refused a request as written (a 4xx other than 408/429): retrying the same request cannot help."""

    def __init__(self, status: int, detail: str, where: str):
        self.status, self.detail = status, detail
        super().__init__(f"{where}: the server refused a request with HTTP {status}: {detail}")


@dataclass
class Request:
    """One API call: the path under the endpoint (`chat/completions` or `completions`) and its JSON body; `scope`
    separates cache keys of requests read differently (see `gendistill.llm.cache`), and is never sent."""

    path: str
    body: dict[str, Any]
    scope: str = ""

    @property
    def key(self) -> str:
        return request_key(self.path, self.body, self.scope)


@dataclass
class Usage:
    """What the requests cost: report.json shows these per source and for an LLM teacher."""

    requests: int = 0  # answered by the server (each counted once, however many tries it took)
    cached: int = 0  # answered from the request cache, not sent
    attempts: int = 0  # HTTP tries, retries included
    retries: int = 0
    failed: int = 0  # given up after max_retries
    errors: Counter[str] = field(default_factory=Counter)  # failed tries by kind
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0  # wall time with requests in flight

    def to_dict(self) -> dict[str, Any]:
        """The counters in field order, the error kinds sorted and the seconds rounded (report.json shows them)."""
        counters = {counter.name: getattr(self, counter.name) for counter in fields(self)}
        return {**counters, "errors": dict(sorted(self.errors.items())), "seconds": round(self.seconds, 3)}

    def since(self, before: dict[str, Any]) -> dict[str, Any]:
        """The counters accumulated since `before` (an earlier `to_dict()`)."""
        now = self.to_dict()
        out: dict[str, Any] = {}
        for key, value in now.items():
            if isinstance(value, dict):
                old = before.get(key, {})
                out[key] = {k: v - old.get(k, 0) for k, v in value.items() if v - old.get(k, 0)}
            else:
                out[key] = round(value - before.get(key, 0), 3) if isinstance(value, float) else value - before[key]
        return out


def _httpx() -> ModuleType:
    """httpx, or one MissingExtra line with the pip command that installs it."""
    try:
        import httpx
    except ImportError:
        raise MissingExtra(
            "LLM sources and teachers need httpx: pip install 'gendistill[llm]' (or pip install httpx jinja2)"
        ) from None
    return httpx


Validate = Callable[[dict[str, Any]], "str | None"]  # an answer -> None if usable, else why not (an error kind)


def _has_choices(answer: dict[str, Any]) -> str | None:
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        return "empty_choices"
    return None


class Client:
    """Sends batches of requests to one served model; answers are cached and counted in `usage`."""

    def __init__(
        self,
        settings: ServedModel,
        cache: RequestCache | None,
        where: str,
        seed: int = 0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.settings, self.cache, self.where = settings, cache, where
        self.transport = transport  # tests: an httpx.MockTransport in place of the network
        self.sleep: Callable[[float], Coroutine[Any, Any, None]] = asyncio.sleep  # tests: record the delays
        self.usage = Usage()
        self._jitter = random.Random(seed)  # timing only: never changes what is asked or answered

    def run(self, requests: list[Request], validate: Validate | None = None) -> list[dict[str, Any]]:
        """The answers to `requests`, in order. Cached answers are reused; the rest are sent concurrently."""
        answers: list[dict[str, Any] | None] = [None] * len(requests)
        pending: dict[str, list[int]] = {}  # the same request twice in a batch is sent once
        for position, request in enumerate(requests):
            cached = self.cache.get(request.key) if self.cache is not None else None
            if cached is not None and (validate is None or validate(cached) is None):
                answers[position] = cached
                self.usage.cached += 1
            else:
                pending.setdefault(request.key, []).append(position)
        if pending:
            unique = [requests[positions[0]] for positions in pending.values()]
            start = time.perf_counter()
            try:
                results = _run_coroutine(self._send_all(unique, validate))
            finally:
                self.usage.seconds += time.perf_counter() - start
            for positions, result in zip(pending.values(), results, strict=True):
                for position in positions:
                    answers[position] = None if isinstance(result, BaseException) else result
            failures = [result for result in results if isinstance(result, BaseException)]
            if failures:  # the server's own refusal says most; a bug (not a GendistillError) is raised as is
                raise next((f for f in failures if isinstance(f, (LLMServerError, RequestRejected))), failures[0])
        return [answer for answer in answers if answer is not None]  # all answered: failures raised above

    async def _send_all(self, requests: list[Request], validate: Validate | None) -> list[Any]:
        httpx = _httpx()
        settings = self.settings
        concurrency = settings.max_concurrency
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        headers = {"Content-Type": "application/json"}
        key = settings.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        semaphore = asyncio.Semaphore(settings.max_concurrency)
        async with httpx.AsyncClient(
            base_url=settings.endpoint + "/",
            headers=headers,
            timeout=httpx.Timeout(settings.timeout),
            limits=limits,
            follow_redirects=True,
            transport=self.transport,
        ) as http:
            return await asyncio.gather(
                *(self._send(http, semaphore, request, validate) for request in requests), return_exceptions=True
            )

    async def _send(
        self, http: httpx.AsyncClient, semaphore: asyncio.Semaphore, request: Request, validate: Validate | None
    ) -> dict[str, Any]:
        httpx = _httpx()
        usage, settings = self.usage, self.settings
        last = "no try"
        async with semaphore:
            for attempt in range(settings.max_retries + 1):
                if attempt:
                    usage.retries += 1
                usage.attempts += 1
                wait: float | None = None
                try:
                    response = await http.post(request.path, json=request.body)
                except httpx.TimeoutException:
                    kind, last = "timeout", f"no answer within {settings.timeout:g} s"
                except httpx.TransportError as error:
                    kind, last = "connection", f"connection failed ({type(error).__name__})"
                else:
                    status = response.status_code
                    if status == 429:
                        kind, last = "rate_limited", "HTTP 429 (rate limited)"
                        wait = retry_after(response.headers)
                    elif status >= 500 or status == 408:
                        kind, last = "server_error", f"HTTP {status}"
                    elif status in (401, 403):
                        raise LLMServerError(
                            f"{self.where}: the server refused the API key (HTTP {status}); check the variable "
                            f"named by api_key_env ({settings.api_key_env or 'none set'})"
                        )
                    elif status >= 400:
                        raise RequestRejected(status, _detail(response), self.where)
                    else:
                        try:
                            answer = json.loads(redact(response.text))  # a server may echo the key back
                        except ValueError:
                            answer = None
                        if not isinstance(answer, dict):
                            kind, last = "malformed_json", "the answer is not a JSON object"
                        else:
                            problem = _has_choices(answer) or (validate(answer) if validate else None)
                            if problem is None:
                                self._record(request, answer)
                                return answer
                            kind, last = problem, f"unusable answer ({problem})"
                usage.errors[kind] += 1
                if attempt < settings.max_retries:
                    await self.sleep(wait if wait is not None else self._backoff(attempt))
        usage.failed += 1
        raise RequestFailed(
            f"{self.where}: a request failed after {settings.max_retries} retries (last: {last}); answers received "
            "so far are cached: rerun the same command to resume (raise max_retries or timeout if the server is "
            "overloaded)"
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half the delay is fixed, half random."""
        delay = min(MAX_DELAY, self.settings.retry_backoff * 2**attempt)
        return delay / 2 + self._jitter.uniform(0, delay / 2)

    def _record(self, request: Request, answer: dict[str, Any]) -> None:
        usage = self.usage
        usage.requests += 1
        tokens = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        usage.prompt_tokens += _int(tokens.get("prompt_tokens"))
        usage.completion_tokens += _int(tokens.get("completion_tokens"))
        if self.cache is not None:
            self.cache.put(request.key, request.path, request.body, answer)
        kill_point("llm.answer")  # crash tests: killed right after an answer is stored


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI's) or `Retry-After` (seconds or an HTTP date)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return min(MAX_RETRY_AFTER, max(0.0, float(milliseconds) / 1000))
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, when.timestamp() - time.time()))


def _detail(response: httpx.Response) -> str:
    """The server's error message, shortened to one line."""
    try:
        body = json.loads(redact(response.text))
        error = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
        if isinstance(error, dict):
            error = error.get("message", error)
        text = str(error)
    except ValueError:
        text = redact(response.text)
    return " ".join(text.split())[:300] or "(no message)"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from code that already runs an event loop (a notebook): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def check_server(settings: ServedModel, where: str) -> None:
    """Preflight: the key's variable is set and the endpoint answers; fails in seconds when nothing listens there
    (any HTTP answer, even 404, means it is there)."""
    if settings.api_key_env is not None and not os.environ.get(settings.api_key_env):
        raise ConfigError(
            f"{where}.api_key_env: the environment variable {settings.api_key_env} is not set; export it with the "
            "API key (or remove api_key_env for a server without authentication)"
        )
    httpx = _httpx()
    headers = {"Authorization": f"Bearer {key}"} if (key := settings.api_key()) else {}
    try:
        httpx.get(f"{settings.endpoint}/models", headers=headers, timeout=min(10.0, settings.timeout))
    except httpx.HTTPError as error:
        raise LLMServerError(
            f"{where}.endpoint {settings.endpoint}: no server answers ({type(error).__name__}); start the server "
            "(e.g. vllm serve MODEL) or fix the endpoint"
        ) from None
