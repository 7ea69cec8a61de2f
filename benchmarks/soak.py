"""Soak the server: a bounded run of mixed normal and hostile traffic against `gendistill serve` on 127.0.0.1,
recording its RSS, open file descriptors and the p99 latency of normal requests at the start and at the end
(issue 25: each within 10% between start and end), and whether /health answers within 1 s while 1,100 idle
connections are open.

    python benchmarks/soak.py EXPORT_DIR [--minutes 10] [--warmup 2] [--out benchmarks/results/serve/soak.json]

EXPORT_DIR is a folder made by `gendistill export` (e.g. `gendistill export runs/quickstart --format onnx
--quantize int8`). The server is the real CLI in its own process with its default limits (its RSS and file
descriptors are read from /proc). Traffic, from one client process:

  normal    /predict and /predict/batch (1-32 texts) with texts drawn from a word list, paced; their latency
  hostile   each round one of: a batch of long unique one-word texts (the word cache, bounded in bytes), a 4 MB
            text (over the character limit), broken JSON, NaN, deep nesting, duplicate keys, a request head
            trickled a line at a time, a body trickled a byte at a time, a connection opened and left idle, a
            connection reset mid-body

The first --warmup minutes are not measured (the word cache fills to its bound and the allocator settles); then
"start" is the first measured minute and "end" the last: RSS and file descriptors are their medians over the
minute's samples (every second), p99 is over the minute's normal requests. At the end, 1,100 idle connections
are opened (the client's descriptor limit is raised to allow it) and /health is timed with them open.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

WORDS = [f"{a}{b}" for a in ("par", "cel", "ord", "ref", "acc", "pay", "card", "box") for b in ("ed", "ing", "s", "")]
IDLE_CONNECTIONS = 1100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_server(export_dir: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "gendistill.cli", "serve", str(export_dir), "--port", str(port), "--threads", "1"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"error: the server exited: {server.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    sys.exit("error: the server did not answer /health within 120 s")


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20)))


def raw(port: int, payload: bytes, *, read: bool = True, timeout: float = 10.0) -> None:
    """Send bytes on a fresh connection and read (or not) what comes back; errors are the point, not a failure."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(payload)
            if read:
                sock.recv(65536)
    except OSError:
        pass


def post_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def hostile_once(port: int, client: httpx.Client, rng: random.Random, kind: int) -> None:
    if kind == 0:  # long unique one-word texts: the word cache must stay within its byte bound
        texts = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=2000)) for _ in range(64)]
        client.post("/predict/batch", json={"texts": texts})
    elif kind == 1:  # a 4 MB text, far over the character limit (413)
        client.post(
            "/predict", content=b'{"text": "' + b"a" * 4_000_000 + b'"}', headers={"content-type": "application/json"}
        )
    elif kind == 2:
        client.post("/predict", content=b'{"text": "broken', headers={"content-type": "application/json"})
    elif kind == 3:
        client.post("/predict", content=b'{"text": NaN}', headers={"content-type": "application/json"})
    elif kind == 4:
        client.post("/predict", content=b"[" * 50_000 + b"]" * 50_000, headers={"content-type": "application/json"})
    elif kind == 5:
        client.post("/predict", content=b'{"text": "a", "text": "b"}', headers={"content-type": "application/json"})
    elif kind == 6:  # a request head trickled a line at a time (closed after the idle timeout)
        threading.Thread(target=_trickle_head, args=(port,), daemon=True).start()
    elif kind == 7:  # a body trickled a byte at a time (closed after the request timeout)
        threading.Thread(target=_trickle_body, args=(port,), daemon=True).start()
    elif kind == 8:  # opened and left idle
        threading.Thread(target=_idle, args=(port, 8.0), daemon=True).start()
    else:  # reset mid-body
        raw(port, post_head("/predict", 1000) + b'{"text": "ab', read=False)


def _trickle_head(port: int) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            for _ in range(60):
                sock.sendall(b"X-Slow: y\r\n")
                time.sleep(0.5)
    except OSError:
        pass


def _trickle_body(port: int) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(post_head("/predict", 5000) + b'{"text": "')
            for _ in range(120):
                sock.sendall(b"a")
                time.sleep(0.5)
    except OSError:
        pass


def _idle(port: int, seconds: float) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=seconds + 5):
            time.sleep(seconds)
    except OSError:
        pass


def traffic(port: int, stop: threading.Event, latencies: list[tuple[float, float]], counts: dict[str, int]) -> None:
    rng = random.Random(0)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
        round_number = 0
        while not stop.is_set():
            for _ in range(10):  # normal requests, timed
                started = time.perf_counter()
                if rng.random() < 0.5:
                    answer = client.post("/predict", json={"text": sentence(rng)})
                else:
                    answer = client.post(
                        "/predict/batch", json={"texts": [sentence(rng) for _ in range(rng.randint(1, 32))]}
                    )
                latencies.append((time.monotonic(), (time.perf_counter() - started) * 1000))
                counts["normal"] += 1
                counts["normal_errors"] += answer.status_code != 200
                time.sleep(0.02)
            try:
                hostile_once(port, client, rng, round_number % 10)
            except httpx.HTTPError:
                counts["hostile_client_errors"] += 1  # a refused body may reset the connection: expected
            counts["hostile"] += 1
            round_number += 1


def window(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [value for at, value in samples if start <= at < end]


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else float("nan")


def idle_health_check(port: int) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    sockets = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        started = time.perf_counter()
        status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5.0).status_code
        seconds = time.perf_counter() - started
    finally:
        for sock in sockets:
            sock.close()
    return {"idle_connections": len(sockets), "health_status": status, "health_seconds": round(seconds, 4)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--minutes", type=float, default=10.0, help="measured minutes (after the warm-up)")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes of traffic before measuring")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve/soak.json"))
    args = parser.parse_args(argv)
    if not (args.export_dir / "model.onnx").is_file():
        sys.exit(
            f"error: {args.export_dir}/model.onnx not found (make one with gendistill export RUN_DIR --format onnx)"
        )
    port = free_port()
    server = start_server(args.export_dir, port)
    stop, latencies, counts = (
        threading.Event(),
        [],
        {"normal": 0, "normal_errors": 0, "hostile": 0, "hostile_client_errors": 0},
    )
    rss: list[tuple[float, float]] = []
    fds: list[tuple[float, float]] = []
    worker = threading.Thread(target=traffic, args=(port, stop, latencies, counts), daemon=True)
    began = time.monotonic()
    worker.start()
    measure_from = began + args.warmup * 60
    finish = measure_from + args.minutes * 60
    try:
        while time.monotonic() < finish:
            if server.poll() is not None:
                sys.exit(f"error: the server died during the soak: {server.stderr.read()[-2000:]}")
            now = time.monotonic()
            rss.append((now, proc_rss_mb(server.pid)))
            fds.append((now, proc_fds(server.pid)))
            time.sleep(1.0)
        stop.set()
        worker.join(60)
        time.sleep(6)  # idle and trickling connections of the last rounds time out
        settled_fds = proc_fds(server.pid)
        health = idle_health_check(port)
    finally:
        server.kill()
        server.wait()
    first = (measure_from, measure_from + 60)
    last = (finish - 60, finish)
    result: dict[str, Any] = {}
    for name, samples, reduce in (
        ("rss_mb", rss, statistics.median),
        ("open_fds", fds, statistics.median),
        ("p99_ms", latencies, p99),
    ):
        start_value, end_value = reduce(window(samples, *first)), reduce(window(samples, *last))
        result[name] = {
            "start": round(start_value, 2),
            "end": round(end_value, 2),
            "ratio": round(end_value / start_value, 3),
        }
    result["peak_rss_mb"] = round(max(value for _, value in rss), 1)
    result["open_fds_after_traffic"] = settled_fds
    result["idle_health"] = health
    result["requests"] = counts
    result["within_10pct"] = all(0.9 <= result[k]["ratio"] <= 1.1 for k in ("rss_mb", "open_fds", "p99_ms"))
    result["health_within_1s"] = health["health_status"] == 200 and health["health_seconds"] < 1.0
    result["minutes"], result["warmup_minutes"] = args.minutes, args.warmup
    result["command"] = "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
