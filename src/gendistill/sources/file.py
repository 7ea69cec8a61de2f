"""`file`: unlabeled texts the user already has (CSV/TSV/JSONL/Parquet or `hf:`), a random `n` of them when set."""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from gendistill.data.tables import iter_unlabeled, read_column, read_table
from gendistill.sources.base import (
    SourceConfig,
    SourceContext,
    SourceSummary,
    clear_shards,
    normalize,
    shard_path,
    text_key,
    write_shard,
)

if TYPE_CHECKING:
    from gendistill.config import RunConfig


class FileSource(SourceConfig):
    """Unlabeled in-domain texts read from a file."""

    type: Literal["file"] = "file"
    path: str = Field(description="CSV/TSV/JSONL/Parquet path, or hf:NAME[:CONFIG][@SPLIT]")
    text_column: str | None = Field(default=None, description="default: data.text_column")
    exclude_labeled: bool = Field(default=True, description="drop texts that are in the labeled training set")

    def inputs(self, config: RunConfig) -> list[str]:
        return [self.path]

    def column(self, config: RunConfig) -> str:
        return self.text_column or config.data.text_column

    def check(self, config: RunConfig, index: int) -> None:
        frame = read_table(self.path, "transfer")
        hint = (
            f"transfer.sources[{index}].text_column"
            if self.text_column
            else (f"transfer.sources[{index}].text_column (it defaults to data.text_column)")
        )
        read_column(frame, self.column(config), self.path, "text", hint)

    def build(self, ctx: SourceContext) -> SourceSummary:
        """Streams the file (never whole in memory). Without `n`, every text that passes the filters is kept, in
        file order; with `n`, a seeded uniform sample of `n` distinct texts: each text gets the key
        hash(seed, source index, text) and the `n` smallest keys are kept (a heap of `n`), so the sample does not
        depend on the file's order or size, and memory grows with `n`, not with the file."""
        drops: Counter[str] = Counter()
        read = 0
        chosen: list[tuple[int, int, str]] = []  # max-heap by key: (-key, fingerprint, text)
        in_heap: set[int] = set()
        writer = _ShardWriter(ctx.directory, ctx.shard_size)
        max_chars = ctx.config.data.max_chars
        salt = f"{ctx.seed}/{ctx.index}/".encode()
        for values in iter_unlabeled(self.path, self.column(ctx.config)):
            read += len(values)
            for value in values:
                text = normalize(value[:max_chars]) if isinstance(value, str) else ""
                reason = ctx.text_filter.reject(text)
                if reason is None and self.exclude_labeled and text in ctx.text_filter.training_texts:
                    reason = "training_copy"
                if reason is not None:
                    drops[reason] += 1
                    continue
                if self.n is None:
                    writer.add(ctx.text_filter([text], drops))
                    continue
                fingerprint = text_key(text)
                if fingerprint in in_heap:
                    drops["duplicate"] += 1
                    continue
                key = int.from_bytes(hashlib.blake2b(salt + text.encode(), digest_size=8).digest(), "little")
                if len(chosen) < self.n:
                    heapq.heappush(chosen, (-key, fingerprint, text))
                    in_heap.add(fingerprint)
                elif key < -chosen[0][0]:
                    _, evicted, _ = heapq.heapreplace(chosen, (-key, fingerprint, text))
                    in_heap.discard(evicted)
                    in_heap.add(fingerprint)
        if self.n is not None:
            sample = [text for _, _, text in sorted(chosen, key=lambda item: -item[0])]
            writer.add(ctx.text_filter(sample, drops))
        shards = writer.close()
        kept = writer.count
        surplus = read - kept - sum(drops.values())
        return SourceSummary(
            type=self.type,
            n=self.n,
            generated=read,
            kept=kept,
            drops=dict(drops),
            surplus=surplus,
            shards=shards,
            details={"file": Path(self.path).name if not self.path.startswith("hf:") else self.path},
        )


class _ShardWriter:
    """Writes texts as they come into shards of `shard_size` (the last one possibly short; one empty shard for an
    empty source, so the source folder always has a shard)."""

    def __init__(self, directory: Path, shard_size: int):
        clear_shards(directory)
        self.directory, self.shard_size = directory, shard_size
        self.pending: list[str] = []
        self.shards = self.count = 0

    def add(self, texts: list[str]) -> None:
        self.pending += texts
        while len(self.pending) >= self.shard_size:
            self._flush(self.pending[: self.shard_size])
            self.pending = self.pending[self.shard_size :]

    def _flush(self, texts: list[str]) -> None:
        write_shard(shard_path(self.directory, self.shards), texts, len(texts), Counter())
        self.shards += 1
        self.count += len(texts)

    def close(self) -> int:
        if self.pending or not self.shards:
            self._flush(self.pending)
            self.pending = []
        return self.shards
