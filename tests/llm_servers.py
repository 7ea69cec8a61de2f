"""Servers on 127.0.0.1 for the LLM tests, each stopping by itself:

- `transformers_serve(model_dir)`: the real `transformers serve` (an OpenAI-compatible server) in a subprocess that
  dies with the test process (PR_SET_PDEATHSIG) and is stopped when the block ends;
- `FakeOpenAI`: a small aiohttp app answering like the OpenAI API reference shows (lists of texts for generation
  prompts; for annotation prompts, answers or first-token `top_logprobs` computed from the text by
  `fake_top_logprobs`, so a test can compute the soft labels by hand), with switches for what it supports;
- `FaultProxy`: an aiohttp reverse proxy that injects 429 (with Retry-After), 500, reset connections, answers slower
  than the client's timeout, malformed JSON and empty choices into a fraction of requests, and records every
  request and whether it was answered.
Background servers run in daemon threads of the test process, so nothing outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from aiohttp import ClientSession, ClientTimeout, web

from gendistill.llm.cache import request_key

TOPICS = {
    "sports": ["match", "goal", "team", "coach", "league", "season", "player", "score"],
    "weather": ["rain", "storm", "sunny", "cloud", "wind", "forecast", "snow", "heat"],
    "cooking": ["recipe", "oven", "flour", "sauce", "garlic", "bake", "pasta", "spice"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, however it dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@contextlib.contextmanager
def transformers_serve(model_dir: Path, log: Path, start_timeout: float = 180) -> Iterator[str]:
    """`transformers serve MODEL_DIR` on a free loopback port; yields its base URL (…/v1)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "transformers.cli.transformers",
        "serve",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"transformers serve exited ({process.returncode}): {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve did not start in {start_timeout} s: {log.read_text()[-2000:]}")
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Background:
    """An aiohttp app served on a free loopback port from a daemon thread with its own event loop."""

    def __init__(self, app: web.Application):
        self.app = app
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> _Background:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
            self.loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - aiohttp keeps the socket there
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(runner.cleanup())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(20), "the test server did not start"
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(20)

    def __enter__(self):
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# ---- a fake OpenAI-compatible server ----------------------------------------------------------------------------
def topic_of(text: str) -> str:
    """The fixture topic whose words a text uses most (ties: alphabetical)."""
    counts = {topic: sum(word in text.split() for word in words) for topic, words in TOPICS.items()}
    return max(sorted(counts), key=lambda topic: counts[topic])


def fake_top_logprobs(text: str, top: int = 20) -> list[tuple[str, float]]:
    """The first-token candidates FakeOpenAI gives for annotating `text`: the right class most likely, with spelling
    variants and a token that names no class, probabilities derived from a hash of the text."""
    right = topic_of(text)
    others = [topic for topic in sorted(TOPICS) if topic != right]
    noise = int(hashlib.sha256(text.encode()).hexdigest()[:4], 16) / 65535
    candidates = [
        (f" {right}", -0.3 - noise),
        (right.capitalize(), -1.7),
        (f" {others[0]}", -2.0 + noise / 2),
        (" The", -2.6),
        (others[1][:3], -3.1),  # a prefix of one verbalizer only: counts for it
    ]
    return sorted(candidates, key=lambda pair: -pair[1])[:top]


class FakeOpenAI(_Background):
    """Answers chat and legacy completion requests the way the OpenAI API reference shows them.

    Generation prompts (they ask for texts of a class) get a numbered list, after a preamble, of as many texts as
    asked, made from the class's fixture words and the request's hash. Annotation prompts (they end with
    "Class:") get the topic of the text, or with `logprobs`, `fake_top_logprobs` in the format of the API used.
    `logprobs=False` ignores the field (as transformers serve does); `reject_logprobs=True` answers 422 (as stricter
    servers do); `n=False` ignores `n`. `echo_key=True` plays a careless server: the request's Authorization header
    comes back in every answer (the id, each generated text) and in a 400 to every request for logprobs.
    `writes`, when set, is what every generation prompt gets instead of the list (a model whose answers are all
    thrown away: "" for empty answers, "ok" for one-word lines). `script`, when set, is asked first for every
    request: script(prompt, body, choices) -> the choices' contents, or None for the answers above (a test that
    controls every answer, e.g. to multi-label prompts)."""

    def __init__(
        self,
        logprobs: bool = True,
        reject_logprobs: bool = False,
        n: bool = True,
        echo_key: bool = False,
        writes: str | None = None,
        script: Callable[[str, dict[str, Any], int], list[str] | None] | None = None,
    ):
        self.logprobs, self.reject_logprobs, self.n, self.echo_key = logprobs, reject_logprobs, n, echo_key
        self.writes, self.script = writes, script
        self.requests: list[dict[str, Any]] = []
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        super().__init__(app)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"path": "chat/completions", "body": body, "headers": dict(request.headers)})
        prompt = "\n".join(message["content"] for message in body["messages"])
        return self._answer(body, prompt, chat=True, auth=request.headers.get("Authorization", ""))

    async def _completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"path": "completions", "body": body, "headers": dict(request.headers)})
        return self._answer(body, body["prompt"], chat=False, auth=request.headers.get("Authorization", ""))

    def _answer(self, body: dict[str, Any], prompt: str, chat: bool, auth: str = "") -> web.Response:
        wants_logprobs = bool(body.get("logprobs"))
        echo = f" {auth}" if self.echo_key else ""
        if wants_logprobs and self.echo_key:
            return web.json_response({"error": {"message": f"logprobs are not allowed for{echo}"}}, status=400)
        if wants_logprobs and self.reject_logprobs:
            return web.json_response({"detail": "Unexpected fields in the request: {'logprobs'}"}, status=422)
        choices = body.get("n", 1) if self.n else 1
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        scripted = self.script(prompt, body, choices) if self.script is not None else None
        if scripted is not None:
            contents, logprobs = scripted, None
        elif prompt.rstrip().endswith("Class:"):
            text = prompt.rstrip().rsplit("Text:", 1)[-1].rsplit("Class:", 1)[0].strip()
            top = fake_top_logprobs(text, body.get("top_logprobs") or body.get("logprobs") or 20)
            rng = random.Random(digest)
            contents = [topic_of(text) if rng.random() < 0.8 else rng.choice(sorted(TOPICS)) for _ in range(choices)]
            logprobs = _logprobs_field(top, chat) if wants_logprobs and self.logprobs else None
        else:
            label = re.search(r'class "([^"]+)"', prompt).group(1)
            count = int(m.group(1)) if (m := re.search(r"Write (\d+) new texts", prompt)) else 3
            words = TOPICS.get(label, ["thing", "stuff", "item", "piece"])
            lines = ["Here are the texts:"] + [
                f"{i + 1}. the {words[i % len(words)]} and {words[(i + 3) % len(words)]} story {digest[:8]}{i}{echo}"
                for i in range(count)
            ]
            contents = ["\n".join(lines) if self.writes is None else self.writes] * choices
            logprobs = None
        made = []
        for index, content in enumerate(contents):
            choice: dict[str, Any] = {"index": index, "finish_reason": "stop", "logprobs": logprobs}
            if chat:
                choice["message"] = {"role": "assistant", "content": content}
            else:
                choice["text"] = content
            made.append(choice)
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": 3 * len(contents), "total_tokens": 0}
        kind = "chat.completion" if chat else "text_completion"
        return web.json_response(
            {"id": digest[:12] + echo, "object": kind, "model": body["model"], "choices": made, "usage": usage}
        )


def _logprobs_field(top: list[tuple[str, float]], chat: bool) -> dict[str, Any]:
    if chat:
        first = {
            "token": top[0][0],
            "logprob": top[0][1],
            "bytes": list(top[0][0].encode()),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in top],
        }
        return {"content": [first], "refusal": None}
    return {
        "tokens": [top[0][0]],
        "token_logprobs": [top[0][1]],
        "top_logprobs": [dict(top)],
        "text_offset": [0],
    }


# ---- a fault-injecting proxy ------------------------------------------------------------------------------------
FAULTS = ("429", "500", "reset", "slow", "malformed", "empty")


class FaultProxy(_Background):
    """Forwards /v1/* to `backend`, injecting faults: first the `schedule` (one fault per try, in arrival order:
    each kind surely occurs), then `faults` (kind -> fraction of tries) in the first `max_faults` tries of each
    request, chosen by a hash of (request, try). `slow` answers after `slow_seconds` (set it beyond the client's
    timeout). `log` holds every try: its cache key (the key the client's request cache uses), try number, outcome;
    `answered` the keys answered with a 200 from the backend; `headers` every try's headers."""

    def __init__(
        self,
        backend: str,
        faults: dict[str, float] | None = None,
        max_faults: int = 2,
        slow_seconds: float = 5.0,
        seed: int = 0,
        schedule: tuple[str, ...] = (),
    ):
        self.backend = backend.rstrip("/")
        self.faults = faults or {}
        self.schedule = list(schedule)
        self.max_faults, self.slow_seconds, self.seed = max_faults, slow_seconds, seed
        self.log: list[dict[str, Any]] = []
        self.answered: set[str] = set()
        self.headers: list[dict[str, str]] = []
        self._tries: Counter[str] = Counter()
        self._session: ClientSession | None = None
        app = web.Application()
        app.router.add_route("*", "/v1/{path:.*}", self._forward)
        super().__init__(app)

    def _fault(self, key: str, attempt: int) -> str | None:
        if self.schedule:
            return self.schedule.pop(0)
        if attempt >= self.max_faults or not self.faults:
            return None
        roll = random.Random(f"{self.seed}/{key}/{attempt}").random()
        for kind, fraction in self.faults.items():
            if roll < fraction:
                return kind
            roll -= fraction
        return None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        raw = await request.read()
        self.headers.append(dict(request.headers))
        if request.method != "POST":
            async with self._client().get(f"{self.backend}/{path}") as response:
                return web.Response(status=response.status, body=await response.read())
        key = request_key(path, json.loads(raw))
        attempt = self._tries[key]
        self._tries[key] += 1
        fault = self._fault(key, attempt)
        self.log.append({"key": key, "attempt": attempt, "outcome": fault or "forwarded"})
        if fault == "429":
            return web.json_response({"error": {"message": "rate limited"}}, status=429, headers={"Retry-After": "1"})
        if fault == "500":
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        if fault == "reset":  # RST: the connection is torn down with no answer at all
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.abort()
            return web.Response(status=500)
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        if fault == "malformed":
            return web.Response(
                status=200, body=b'{"id": "x", "choices": [{"index": 0, "mess', content_type="application/json"
            )
        if fault == "empty":
            return web.json_response({"id": "x", "object": "chat.completion", "choices": []})
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with self._client().post(f"{self.backend}/{path}", data=raw, headers=headers) as response:
            body = await response.read()
            status = response.status
        answer = web.Response(status=status, body=body, content_type="application/json")
        try:
            await answer.prepare(request)
            await answer.write_eof()
        except ConnectionError:  # the client gave up on a slow answer
            return answer
        if status == 200 and fault != "slow":
            self.answered.add(key)
        return answer

    def _client(self) -> ClientSession:
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=600))
        return self._session

    def outcomes(self) -> Counter[str]:
        return Counter(entry["outcome"] for entry in self.log)

    def stop(self) -> None:
        if self._session is not None:
            asyncio.run_coroutine_threadsafe(self._session.close(), self.loop).result(10)
        super().stop()
