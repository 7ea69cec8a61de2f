"""The request cache: every answered request, on disk, keyed by the request itself.

One SQLite file per run directory (`cache/llm-requests.sqlite`, outside every stage's outputs, so `--force` or a
config change that regenerates the transfer set still finds the answers it can reuse). Each answer is committed as
it arrives, in WAL mode with `synchronous=FULL`: a process killed at any moment keeps every answer it had received,
and a rerun sends only the requests that were never answered.

The key hashes the API path and the JSON body (model, messages or prompt, sampling settings, seed), never the
server's address or the API key: the same request to the same model is the same answer wherever it is served.
A `scope` (e.g. "multi_label") enters the key but not the body: a multi-label request whose body happens to equal a
single-label one (a custom template that ignores `multi_label`) never gets the single-label answer, which was read
differently. Requests without a scope keep the keys they always had. Delete the file to ask the server again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any


def request_key(path: str, body: dict[str, Any], scope: str = "") -> str:
    keyed: dict[str, Any] = {"path": path, "body": body, **({"scope": scope} if scope else {})}
    payload = json.dumps(keyed, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class RequestCache:
    """Answers by request key; one thread at a time per process (processes share the file through SQLite locks)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # timeout: under `accelerate launch` several processes label through the same file (WAL lets them)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, path TEXT NOT NULL, request TEXT NOT NULL, "
            "response TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT response FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, path: str, body: dict[str, Any], response: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)",
            (key, path, json.dumps(body, ensure_ascii=False), json.dumps(response, ensure_ascii=False), time.time()),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
