"""Run a page of a web export in headless Chromium and read back the JSON it posts: how the web export's test and
benchmarks/latency_web.py measure gendistill.js against the Python Predictor.

`run_page(root, page)` serves `root` on 127.0.0.1 (the standard library's static server, as a user's
`python -m http.server` would) with one addition, POST /result, which the page calls with its answer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# a page that posts its answer needs the browser kept running: one-shot modes (--dump-dom) exit after the load event
CHROMIUM_FLAGS = (*HEADLESS_FLAGS, "--remote-debugging-port=0")


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_headless(*args: str, timeout: float = 120.0, chromium: str | None = None) -> subprocess.CompletedProcess:
    """Chromium's one-shot headless modes (`--dump-dom URL`, `--screenshot=PNG URL`) with a fresh profile that is
    removed afterwards: how the report test checks that report.html renders its tables and pictures."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="gendistill-chromium-") as profile:
        return subprocess.run(
            [chromium, *HEADLESS_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm", ".js": "text/javascript"}

    def __init__(self, *args: Any, answer: dict[str, Any], **kwargs: Any):
        self.answer = answer
        super().__init__(*args, **kwargs)

    def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()
        self.answer["body"] = body
        self.answer["event"].set()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def run_page(root: Path, page: str, *, timeout: float = 120.0, chromium: str | None = None) -> Any:
    """Open http://127.0.0.1:PORT/`page` (served from `root`) in headless Chromium and return the JSON the page
    POSTs to /result; RuntimeError (with the browser's last log lines) when none comes within `timeout` s."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install chromium)")
    answer: dict[str, Any] = {"event": threading.Event()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root), answer=answer))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{page}"
    with tempfile.TemporaryDirectory(prefix="gendistill-chromium-") as profile, tempfile.TemporaryFile() as log:
        browser = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            posted = answer["event"].wait(timeout)
        finally:
            browser.terminate()
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
            server.shutdown()
            server.server_close()
        if not posted:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{url}: no result within {timeout:.0f} s; chromium said:\n{tail}")
    return json.loads(answer["body"])
