"""The transfer set: unlabeled texts from several sources, cleaned, deduplicated and written in Parquet shards.

Shards are written atomically while sampling runs, each with its own seed, so an interrupted run keeps every
finished shard and regenerates exactly the one it lost: the final set is the same with or without a crash.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gendistill import progress
from gendistill.checkpoint import kill_point
from gendistill.config import FilterConfig, TransferSource
from gendistill.data import load_unlabeled
from gendistill.io import write_parquet

FILTERS = ("empty", "too_short", "too_long", "duplicate", "training_copy")


def normalize(text: str) -> str:
    return " ".join(text.split())


@dataclass
class TextFilter:
    """Cleans candidate texts and counts every drop by reason; `seen` is shared across sources."""

    config: FilterConfig
    training_texts: set[str]
    seen: set[str] = field(default_factory=set)

    def __call__(self, texts: list[str], drops: Counter[str]) -> list[str]:
        kept = []
        for raw in texts:
            text = normalize(raw)
            words = len(text.split())
            if not text:
                drops["empty"] += 1
            elif words < self.config.min_words:
                drops["too_short"] += 1
            elif words > self.config.max_words:
                drops["too_long"] += 1
            elif self.config.drop_training_copies and text in self.training_texts:
                drops["training_copy"] += 1
            elif self.config.drop_duplicates and text in self.seen:
                drops["duplicate"] += 1
            else:
                self.seen.add(text)
                kept.append(text)
        return kept


@dataclass
class SourceSummary:
    type: str
    requested: int | None
    generated: int = 0
    kept: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    surplus: int = 0  # passed the filters after the request was met (the last shard's overshoot)
    shards: int = 0
    note: str | None = None
    details: dict | None = None

    def to_dict(self) -> dict:
        return {
            "type": self.type,
            "requested": self.requested,
            "generated": self.generated,
            "kept": self.kept,
            "drops": {name: self.drops.get(name, 0) for name in FILTERS},
            "surplus": self.surplus,
            "shards": self.shards,
            **({"note": self.note} if self.note else {}),
            **({"details": self.details} if self.details else {}),
        }


def source_dir(root: Path, index: int, source: TransferSource) -> Path:
    return root / f"{index:02d}-{source.type}"


def shard_path(directory: Path, number: int) -> Path:
    return directory / f"shard-{number:05d}.parquet"


def list_shards(directory: Path) -> list[Path]:
    return sorted(directory.glob("shard-*.parquet")) if directory.exists() else []


def write_shard(path: Path, texts: list[str], generated: int, drops: Counter[str]) -> None:
    metadata = {"generated": str(generated), "drops": json.dumps(dict(drops))}
    table = pa.table({"text": pa.array(texts, type=pa.string())}).replace_schema_metadata(metadata)
    write_parquet(path, table)


def read_shard(path: Path) -> tuple[list[str], int, Counter[str]]:
    table = pq.read_table(path)
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return (
        table.column("text").to_pylist(),
        int(metadata.get("generated", 0)),
        Counter(json.loads(metadata.get("drops", "{}"))),
    )


def shard_seed(seed: int, source_index: int, shard: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{source_index}/{shard}".encode()).digest()[:4], "little")


Sampler = Callable[[int, int], list[str]]  # (n, seed) -> raw texts


def build_generated_source(
    directory: Path,
    index: int,
    source: TransferSource,
    sampler: Sampler,
    text_filter: TextFilter,
    shard_size: int,
    seed: int,
) -> SourceSummary:
    """Sample until `source.n` texts survive the filters (or the attempt budget runs out), shard by shard."""
    assert source.n is not None
    summary, drops = SourceSummary(type=source.type, requested=source.n), Counter()
    existing = list_shards(directory)
    for path in existing:  # resume: replay finished shards into the filter's memory and the counters
        texts, generated, shard_drops = read_shard(path)
        text_filter.seen.update(texts)
        summary.generated += generated
        summary.kept += len(texts)
        summary.surplus += int(shard_drops.pop("surplus", 0))
        drops.update(shard_drops)
    number = len(existing)
    max_generated = max(10 * source.n, source.n + 10 * shard_size)
    with progress.bar(f"generate: source {index}", total=source.n, completed=summary.kept) as bar:
        while summary.kept < source.n and summary.generated < max_generated:
            raw = sampler(shard_size, shard_seed(seed, index, number))
            shard_drops: Counter[str] = Counter()
            passed = text_filter(raw, shard_drops)
            kept = passed[: source.n - summary.kept]
            surplus = len(passed) - len(kept)
            write_shard(shard_path(directory, number), kept, len(raw), shard_drops + Counter(surplus=surplus))
            summary.generated += len(raw)
            summary.kept += len(kept)
            summary.surplus += surplus
            drops.update(shard_drops)
            number += 1
            bar.advance(len(kept))
            kill_point("generate.shard")
    if summary.kept < source.n:
        summary.note = f"stopped after {summary.generated} samples with {summary.kept} kept (filters dropped the rest)"
    summary.drops, summary.shards = dict(drops), number
    return summary


def build_file_source(
    directory: Path,
    index: int,
    source: TransferSource,
    text_filter: TextFilter,
    labeled_texts: set[str],
    shard_size: int,
    seed: int,
    max_chars: int,
) -> SourceSummary:
    """Unlabeled texts the user already has; a random `n` of them when `n` is set."""
    assert source.path is not None
    texts = load_unlabeled(source.path, source.text_column, max_chars)
    drops: Counter[str] = Counter()
    if source.exclude_labeled:
        before = len(texts)
        texts = [t for t in texts if normalize(t) not in labeled_texts]
        drops["training_copy"] += before - len(texts)
    random.Random(seed + index).shuffle(texts)
    kept = text_filter(texts, drops)
    if source.n is not None:
        kept = kept[: source.n]
    _write_shards(directory, kept, shard_size)
    shards = max(1, -(-len(kept) // shard_size))
    return SourceSummary(
        type=source.type,
        requested=source.n,
        generated=len(texts) + drops["training_copy"],
        kept=len(kept),
        drops=dict(drops),
        shards=shards,
    )


def build_augment_source(
    directory: Path,
    index: int,
    source: TransferSource,
    text_filter: TextFilter,
    labeled_texts: list[str],
    shard_size: int,
    seed: int,
) -> SourceSummary:
    """Rule-based variants of the labeled texts (Tang et al. 2019); a random `n` of them when `n` is set."""
    from gendistill.augment import AugmentConfig, augment_texts

    options = AugmentConfig(
        p_mask=source.p_mask,
        p_swap=source.p_swap,
        p_ngram=source.p_ngram,
        ngram_max=source.ngram_max,
        copies=source.copies,
        mask_token=source.mask_token,
        swap=source.swap,
    )
    candidates, stats = augment_texts(labeled_texts, options, seed + index)
    drops: Counter[str] = Counter()
    kept = text_filter(candidates, drops)
    if source.n is not None:
        random.Random(seed + index).shuffle(kept)
        kept = kept[: source.n]
    _write_shards(directory, kept, shard_size)
    summary = SourceSummary(
        type=source.type,
        requested=source.n,
        generated=len(candidates),
        kept=len(kept),
        drops=dict(drops),
        shards=max(1, -(-len(kept) // shard_size)),
    )
    summary.note = None
    summary.details = {"swap_mode": stats["swap_mode"], "copies": source.copies}
    return summary


def _write_shards(directory: Path, texts: list[str], shard_size: int) -> None:
    for old in list_shards(directory):
        old.unlink()
    for number in range(max(1, -(-len(texts) // shard_size))):
        chunk = texts[number * shard_size : (number + 1) * shard_size]
        write_shard(shard_path(directory, number), chunk, len(chunk), Counter())


def read_transfer_set(root: Path) -> list[tuple[Path, list[str]]]:
    """Every transfer shard in source order: (shard path, its texts)."""
    return (
        [
            (path, read_shard(path)[0])
            for source in sorted(p for p in root.iterdir() if p.is_dir())
            for path in list_shards(source)
        ]
        if root.exists()
        else []
    )
