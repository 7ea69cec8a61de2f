"""Atomic file writes and content hashes: a crash never leaves a half-written file behind."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

T = TypeVar("T")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the final file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# Secrets (API keys read from the environment) that must reach no file, log line or error message. `redact` is the
# one scrubber: every text file is written through `write_text`, log lines through progress, errors through the CLI,
# and a served LLM's answers are scrubbed as they arrive (llm.client), so a server that echoes the key writes nothing.
REDACTED = "[redacted]"
_SECRETS: set[str] = set()
MIN_SECRET_CHARS = 6  # shorter values would blank out ordinary words


def register_secret(value: str | None) -> None:
    """Remember `value` as a secret of this process: `redact` replaces it from now on."""
    if value and len(value) >= MIN_SECRET_CHARS:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by [redacted]."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(redact(text), encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parquet_record(path: str | Path, rows: int) -> dict[str, Any]:
    """What an index of shards records of a Parquet file just written: its rows and sha256."""
    return {"rows": rows, "sha256": file_sha256(path)}


def parquet_damage(path: Path, record: Any = None) -> str | None:
    """Why the Parquet file at `path` is not the one its index recorded (`record`: a `parquet_record`, a bare row
    count from an older index, or None for a file that predates indexes), or None when it is. The checksum comes
    first: pyarrow does not notice every damage, and the one it notices ends in a traceback far from the file."""
    if not path.is_file():
        return "is missing"
    sha256 = record.get("sha256") if isinstance(record, dict) else None
    if sha256 is not None and file_sha256(path) != sha256:
        return "is not the file that was written (its sha256 differs from the recorded one)"
    try:
        rows = pq.read_metadata(path).num_rows
    except (pa.ArrowException, OSError) as error:
        return f"is not readable as Parquet ({str(error)[:80]})"
    expected = record.get("rows") if isinstance(record, dict) else record
    if isinstance(expected, int) and rows != expected:
        return f"has {rows} rows, not the {expected} that were written"
    return None


def tree_sha256(path: str | Path) -> str:
    """Hash of a file, or of every file in a directory (names and contents), for manifest input hashes."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(child.relative_to(path)).encode())
        digest.update(file_sha256(child).encode())
    return digest.hexdigest()


def texts_sha256(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def stable_hash(payload: object) -> str:
    """A short hash of JSON-serializable data (stage keys, config hashes)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def remove_path(path: Path) -> None:
    """Delete a file, folder or symlink (never what a symlink points to: adopted outputs belong to another run)."""
    import shutil

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter), read lazily: a stream of millions stays a stream."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
