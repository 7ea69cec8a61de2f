"""The cascade: texts the student defers (top calibrated probability below the server's min_confidence) are sent
to a bigger model, the fallback; every other text is answered by the student alone and never leaves it.

Two fallbacks, chosen by `gendistill serve EXPORT --min-confidence P --fallback URL [--fallback-model NAME]`:
- `ServedFallback`: another gendistill server, typically the run's teacher (`gendistill serve-teacher RUN_DIR`),
  asked on POST /predict/batch; its labels (GET /info) must all be labels the student knows, checked at start;
- `LLMFallback` (with --fallback-model; artifacts.llm_fallback, which needs the training extras the llm teacher
  imports): an OpenAI-compatible LLM, asked through the `llm` teacher's own code (its prompt, verbalizers, retries
  and request cache), so the cascade asks exactly what a run's llm teacher would.

A fallback that fails at answer time (refused connection, timeout, 5xx, a malformed answer, a label the student
does not know) raises FallbackError: the server then answers the student's own label with `fallback_error: true`
rather than failing the request. A fallback that does not answer at start is a FallbackUnavailable (a user error,
one line, exit 2): a cascade that would degrade on its first request should not start.

`Metrics` counts what the cascade did for GET /metrics. Only httpx and the stdlib here, so a torch-free deployment
can serve a cascade to a gendistill fallback.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from gendistill.artifacts.limits import DEFAULT_FALLBACK_TIMEOUT
from gendistill.errors import GendistillError

# texts per request to a fallback whose GET /info names no limit (the gendistill servers' default)
DEFAULT_MAX_TEXTS = 256
# latencies kept per path for the percentiles: a bounded window, so a long-lived server's memory does not grow
LATENCY_WINDOW = 10_000


class FallbackError(Exception):
    """The fallback failed to answer a request (at answer time); the message says how, in one line."""


class FallbackUnavailable(GendistillError):
    """The fallback cannot serve this student (at start): not answering, or labels the student does not know."""


class Fallback(Protocol):
    def classify(self, texts: list[str]) -> list[str | None]:
        """One label per text, each a label of the student, or None for a text the fallback gave no such label
        (a failure for that text alone); FallbackError when the whole request failed."""
        ...


def _unknown_labels(labels: Sequence[str], known: Sequence[str]) -> list[str]:
    return [label for label in labels if label not in known]


class ServedFallback:
    """A gendistill server (`gendistill serve-teacher RUN_DIR`, or `gendistill serve` of a bigger export) at `url`.
    The constructor asks GET /info once: the server must answer, and every label it can give must be one of
    `student_labels`, so that an answer is always a label the student's clients know."""

    def __init__(self, url: str, student_labels: Sequence[str], timeout: float = DEFAULT_FALLBACK_TIMEOUT):
        self.url = url.rstrip("/")
        self.student_labels = list(student_labels)
        self.client = httpx.Client(base_url=self.url, timeout=timeout)
        try:
            response = self.client.get("/info")
            response.raise_for_status()
            info = response.json()
            labels = info["labels"]
            if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
                raise TypeError("labels is not a list of strings")
            # its batch limit: a larger batch of deferred texts is sent in several requests
            self.max_texts = max(1, int((info.get("limits") or {}).get("max_texts") or DEFAULT_MAX_TEXTS))
        except httpx.HTTPError as error:
            raise FallbackUnavailable(
                f"--fallback {url}: no gendistill server answers GET /info ({type(error).__name__}); start one "
                "(gendistill serve-teacher RUN_DIR --port N) or fix the URL"
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise FallbackUnavailable(
                f"--fallback {url}: GET /info did not answer a gendistill server's JSON with labels ({error}); "
                "point --fallback at a gendistill server, or add --fallback-model NAME for an OpenAI-compatible LLM"
            ) from None
        unknown = _unknown_labels(labels, self.student_labels)
        if unknown:
            raise FallbackUnavailable(
                f"--fallback {url}: its labels {', '.join(unknown)} are not labels of the student "
                f"({', '.join(self.student_labels)}); serve a fallback trained on the same labels"
            )
        self.labels: list[str] = labels

    def classify(self, texts: list[str]) -> list[str | None]:
        labels: list[str | None] = []
        for start in range(0, len(texts), self.max_texts):
            labels.extend(self._classify(texts[start : start + self.max_texts]))
        return labels

    def _classify(self, texts: list[str]) -> list[str]:
        try:
            response = self.client.post("/predict/batch", json={"texts": texts})
        except httpx.HTTPError as error:
            raise FallbackError(f"fallback {self.url}: {type(error).__name__}") from None
        if response.status_code != 200:
            raise FallbackError(f"fallback {self.url}: HTTP {response.status_code}")
        try:
            predictions = response.json()["predictions"]
            labels = [prediction["label"] for prediction in predictions]
        except (ValueError, KeyError, TypeError):
            raise FallbackError(f"fallback {self.url}: the answer is not a batch of predictions") from None
        if len(labels) != len(texts) or not all(isinstance(label, str) for label in labels):
            raise FallbackError(f"fallback {self.url}: the answer does not hold one label per text")
        unknown = _unknown_labels(labels, self.student_labels)
        if unknown:
            raise FallbackError(f"fallback {self.url}: label {unknown[0]!r} is not a label of the student")
        return labels

    def close(self) -> None:
        self.client.close()


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


class Metrics:
    """What GET /metrics answers: texts answered by the student, escalated to the fallback and failed there, and
    the latency of each path a request takes (`student`: answered by the student alone; `fallback`: at least one
    text escalated). Thread-safe: requests are answered in a thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.texts = {"student": 0, "escalated": 0, "fallback": 0, "fallback_errors": 0}
        self._latency: dict[str, tuple[list[float], deque[float]]] = {}

    def count(self, *, student: int, escalated: int, fallback: int, errors: int) -> None:
        with self._lock:
            self.texts["student"] += student
            self.texts["escalated"] += escalated
            self.texts["fallback"] += fallback
            self.texts["fallback_errors"] += errors

    def time(self, path: str, seconds: float) -> None:
        with self._lock:
            totals, window = self._latency.setdefault(path, ([0.0, 0.0], deque(maxlen=LATENCY_WINDOW)))
            totals[0] += 1
            totals[1] += seconds
            window.append(seconds)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            latency = {}
            for path in ("student", "fallback"):
                totals, window = self._latency.get(path, ([0.0, 0.0], deque()))
                ordered = sorted(window)
                latency[path] = {
                    "count": int(totals[0]),
                    "mean": totals[1] / totals[0] if totals[0] else None,
                    "p50": _percentile(ordered, 0.50),
                    "p99": _percentile(ordered, 0.99),
                }
            return {"texts": dict(self.texts), "latency_seconds": latency}


def _percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile of a sorted window (None when empty)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Timer:
    """`with Timer() as timer: ...; timer.seconds`: wall time of a block."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.start
