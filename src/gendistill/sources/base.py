"""What every transfer source shares: its config base, the context it builds in, the filter every text passes, the
Parquet shards it writes and the summary it reports.

A source is a `SourceConfig` subclass registered in `gendistill.sources` with a `type` tag: its fields are its
config (YAML `transfer.sources[i]`), `build(ctx)` writes its shards. Shards are written atomically while a source
runs, each with its own seed, so an interrupted run keeps every finished shard and redoes exactly the one it lost:
the final set is the same with or without a crash.

Each source folder's shards.json records every finished shard's rows and sha256. A resumed source samples again
from the first damaged shard (its last good state); the label stage refuses a damaged shard of a finished transfer
set with one line naming the file and the command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from gendistill import progress
from gendistill.errors import RunDirError, YieldError
from gendistill.io import parquet_damage, parquet_record, read_json, write_json, write_parquet
from gendistill.sections import Section, knob
from gendistill.training.checkpoint import kill_point

if TYPE_CHECKING:
    import torch

    from gendistill.config import FilterConfig, RunConfig
    from gendistill.data.task import TaskData
    from gendistill.pipeline.context import StageContext
    from gendistill.pipeline.layout import RunLayout

FILTERS = ("empty", "too_short", "too_long", "duplicate", "training_copy")
YIELD_AFTER = 200  # texts drawn before a source's `min_yield` is checked: fewer say too little about its yield


def normalize(text: str) -> str:
    return " ".join(text.split())


def text_key(text: str) -> int:
    """A 64-bit fingerprint of a normalized text: duplicates are found by these, not by the strings, so the memory
    for a transfer set of millions is 8 bytes of digest per text (a collision, about 1 in 10^19 per pair at a
    million texts, would drop one text as a duplicate)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass
class TextFilter:
    """Cleans candidate texts and counts every drop by reason; `seen` (fingerprints of kept texts) is shared
    across sources."""

    config: FilterConfig
    training_texts: set[str]
    seen: set[int] = field(default_factory=set)

    def remember(self, texts: list[str]) -> None:
        """Texts kept before (a resumed shard): later duplicates of them are dropped."""
        self.seen.update(text_key(text) for text in texts)

    def reject(self, text: str) -> str | None:
        """Why a normalized text would be dropped (a FILTERS name), or None; does not remember it."""
        words = len(text.split())
        if not text:
            return "empty"
        if words < self.config.min_words:
            return "too_short"
        if words > self.config.max_words:
            return "too_long"
        if self.config.drop_training_copies and text in self.training_texts:
            return "training_copy"
        if self.config.drop_duplicates and text_key(text) in self.seen:
            return "duplicate"
        return None

    def __call__(self, texts: list[str], drops: Counter[str]) -> list[str]:
        return [normalize(texts[i]) for i in self.select(texts, drops)]

    def select(self, texts: list[str], drops: Counter[str]) -> list[int]:
        """The positions of the texts that pass (so per-text columns can follow them); counts every drop and
        remembers what passes."""
        kept = []
        for position, raw in enumerate(texts):
            text = normalize(raw)
            reason = self.reject(text)
            if reason is not None:
                drops[reason] += 1
                continue
            if self.config.drop_duplicates:
                self.seen.add(text_key(text))
            kept.append(position)
        return kept


@dataclass
class SourceSummary:
    """What one source did; report.json's `transfer_set.sources[i]`."""

    type: str
    n: int | None  # the source's `n`: texts to keep (None: all it has)
    generated: int = 0
    kept: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    surplus: int = 0  # passed the filters after `n` were kept (the last shard's overshoot)
    shards: int = 0
    note: str | None = None
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "n": self.n,
            "generated": self.generated,
            "kept": self.kept,
            "drops": {name: self.drops.get(name, 0) for name in FILTERS},
            "surplus": self.surplus,
            "shards": self.shards,
            "note": self.note,
            "details": self.details,
        }


@dataclass
class SourceContext:
    """Everything a source may read while it builds: the run's config and paths, the labeled task, the shared
    filter, where to write, and the stage's device."""

    config: RunConfig
    layout: RunLayout
    task: TaskData
    index: int
    directory: Path
    text_filter: TextFilter
    device: torch.device
    stage: StageContext | None = None  # rank, world size and collectives under `accelerate launch`

    @property
    def rank(self) -> int:
        return self.stage.rank if self.stage is not None else 0

    @property
    def world(self) -> int:
        return self.stage.world if self.stage is not None else 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard_size(self) -> int:
        return self.config.transfer.shard_size

    @property
    def seed(self) -> int:
        return self.config.seed


class SourceConfig(Section):
    """Base of every transfer source config. Subclasses add `type: Literal["name"]` and their own fields."""

    type: str
    n: Annotated[int, Field(ge=1)] | None = Field(default=None, description="texts to keep (default: all it has)")
    # A knob, as max_retries is: it decides whether the stage finishes, never what a finished stage wrote (a source
    # under it stops with an error, not with a smaller set), so existing keys stay as they were and lowering it
    # after a stop resumes from the shards already kept instead of starting over.
    min_yield: Annotated[float, Field(ge=0, le=1)] = knob(
        0.05,
        description="sources that sample (generate, llm): stop with one line, before spending the rest of the "
        "sample budget, when fewer than this fraction of the texts drawn (an llm source: asked for, retries "
        f"included) pass the filters; checked once {YIELD_AFTER} texts are drawn; 0: never stop",
    )

    needs_generator: ClassVar[bool] = False  # True: the generator stage must run before this source
    needs_labeled_texts: ClassVar[bool] = False  # True: refused in a zero-label start (no data.train)
    supports_multi_label: ClassVar[bool] = True  # False: picks texts per single class, refused in a multi-label task
    parallel: ClassVar[bool] = False  # True: every process builds it together (fill_by_sampling splits the shards)

    def inputs(self, config: RunConfig) -> list[str]:
        """User files this source reads: their content hashes enter the transfer stage's key."""
        return []

    def key_fields(self, config: RunConfig) -> dict[str, Any]:
        """What this source's texts depend on outside its own fields (e.g. a default taken from another section):
        it enters the transfer stage's key, so changing it rebuilds the transfer set."""
        return {}

    def check(self, config: RunConfig, index: int) -> None:
        """Preflight: fail in seconds, with a message naming `transfer.sources[index]`, before any training."""

    def build(self, ctx: SourceContext) -> SourceSummary:
        raise NotImplementedError

    def where(self, index: int) -> str:
        return f"transfer.sources[{index}] ({self.type})"

    def explain_yield(self, stats: dict[str, Any]) -> str:
        """What the source itself threw away before the filters saw it (from its summed `Sample.stats`), for the
        low-yield error; "" when nothing."""
        return ""

    def report(self, layout: RunLayout, index: int, row: Any) -> list[str]:
        """Called by the evaluate stage with this source's report row (a `SourceRow`, whose `details` it may
        extend, e.g. with measures that need the teacher's labels); returns notes for the report."""
        return []


# ---- shards --------------------------------------------------------------------------------------------------
def source_dir(root: Path, index: int, source: SourceConfig) -> Path:
    return root / f"{index:02d}-{source.type}"


def shard_path(directory: Path, number: int) -> Path:
    return directory / f"shard-{number:05d}.parquet"


def list_shards(directory: Path) -> list[Path]:
    return sorted(directory.glob("shard-*.parquet")) if directory.exists() else []


SHARD_INDEX = "shards.json"  # in each source folder: every finished shard's rows and sha256, by file name


def read_shard_index(directory: Path) -> dict[str, Any]:
    """The folder's shard index; {} when there is none (shards written before indexes) or it is unreadable (its
    shards are then checked for readability only)."""
    try:
        index = read_json(directory / SHARD_INDEX)
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def clear_shards(directory: Path) -> None:
    """Remove a folder's shards and their index, before a source writes its set anew."""
    for old in list_shards(directory):
        old.unlink()
    (directory / SHARD_INDEX).unlink(missing_ok=True)


def good_shards(directory: Path) -> list[Path]:
    """The folder's shards up to the first damaged or missing one, which is removed with every shard after it
    (one warning line): a source samples again from there, so the set is the one an undamaged run makes."""
    index = read_shard_index(directory)
    shards = list_shards(directory)
    unrecorded = False
    for number, path in enumerate(shards):
        expected = shard_path(directory, number)
        problem = parquet_damage(path, index.get(path.name)) if path == expected else None
        if path != expected:
            path, problem = expected, "is missing"
        elif problem is None and path.name not in index:  # written just before a kill, intact: record it now
            index[path.name] = parquet_record(path, pq.read_metadata(path).num_rows)
            unrecorded = True
        if problem is not None:
            later = [shard for shard in shards if shard.name >= path.name]
            progress.warning(
                f"transfer shard {path} {problem}: the source samples it again, and the {len(later) - 1} after it "
                "(from its last good state)"
            )
            for shard in later:
                shard.unlink(missing_ok=True)
            kept = {shard.name for shard in shards[:number]}
            write_json(directory / SHARD_INDEX, {name: entry for name, entry in index.items() if name in kept})
            return shards[:number]
    if unrecorded:
        write_json(directory / SHARD_INDEX, index)
    return shards


def check_transfer_shards(layout: RunLayout) -> None:
    """Every shard the transfer stage recorded is there, intact: one line naming a damaged one and the command that
    rebuilds the set, never a pyarrow traceback while labeling."""
    if not layout.transfer.exists():
        return
    for directory in sorted(p for p in layout.transfer.iterdir() if p.is_dir()):
        index = read_shard_index(directory)
        for name in sorted(set(index) | {path.name for path in list_shards(directory)}):
            problem = parquet_damage(directory / name, index.get(name))
            if problem is not None:
                raise RunDirError(
                    f"{directory / name} {problem} (a shard of the finished transfer set); the run directory is "
                    f"damaged: rebuild the set with `gendistill run {layout.config} --run-dir {layout.root} --force "
                    "transfer`"
                )


def write_shard(
    path: Path,
    texts: list[str],
    generated: int,
    drops: Counter[str],
    extra: dict[str, list[Any]] | None = None,
    stats: dict[str, Any] | None = None,
    asked: int | None = None,
    record: bool = True,
) -> None:
    """Write a shard atomically, then (with `record`) add it to its folder's index. A kill in between leaves a
    complete shard the index lacks: it is checked for readability only."""
    metadata = {"generated": str(generated), "drops": json.dumps(dict(drops))}
    if stats:
        metadata["stats"] = json.dumps(stats)
    if asked is not None:
        metadata["asked"] = str(asked)
    columns: dict[str, Any] = {"text": pa.array(texts, type=pa.string()), **(extra or {})}
    write_parquet(path, pa.table(columns).replace_schema_metadata(metadata))
    if record:
        index = read_shard_index(path.parent)
        index[path.name] = parquet_record(path, len(texts))
        write_json(path.parent / SHARD_INDEX, index)


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


Sampler = Callable[[int, int], list[str]]  # (shard_size, seed) -> raw texts


@dataclass
class Sample:
    """One shard's draw: raw texts; per-text `columns` that follow the texts through the filter into the shard
    (e.g. the class an LLM was asked to write); `stats`, numbers (or nested dicts of numbers) stored with the
    shard and summed over all shards, those of a resumed run's finished shards included, into the summary's
    details."""

    texts: list[str]
    columns: dict[str, list[Any]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    asked: int | None = None  # texts the draw asked for, when not len(texts) (an llm source: retries included)

    @property
    def drawn(self) -> int:
        """What the draw counts against the sample budget and the yield: the texts asked for or got, the more."""
        return max(len(self.texts), self.asked or 0)


ShardSampler = Callable[[int, int, int], Sample]  # (shard_size, seed, shard number) -> the shard's draw


def add_stats(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """`total` with every number of `more` added in (nested dicts are added key by key)."""
    for key, value in more.items():
        if isinstance(value, dict):
            total[key] = add_stats(dict(total.get(key) or {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
    return total


def shard_stats(path: Path) -> dict[str, Any]:
    """The counters a sampler recorded with a shard (`Sample.stats`); {} for shards that have none."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata.get(b"stats", b"{}").decode())


def shard_asked(path: Path) -> int | None:
    """The texts a shard's draw asked for (`Sample.asked`); None for shards that did not record it."""
    metadata = pq.read_schema(path).metadata or {}
    return int(metadata[b"asked"]) if b"asked" in metadata else None


def _write_sample(path: Path, sample: Sample) -> None:
    """A raw draw (under `accelerate launch`): each process writes its own, so none is indexed (see `draw`)."""
    write_shard(
        path, sample.texts, len(sample.texts), Counter(), sample.columns, sample.stats, sample.asked, record=False
    )


def _read_sample(path: Path) -> Sample:
    table = pq.read_table(path)
    columns = {name: table.column(name).to_pylist() for name in table.column_names if name != "text"}
    return Sample(table.column("text").to_pylist(), columns, shard_stats(path), shard_asked(path))


def fill_by_sampling(ctx: SourceContext, source: SourceConfig, sampler: Sampler) -> SourceSummary:
    """`fill_shards` for a sampler of plain texts: (shard_size, seed) -> texts."""
    return fill_shards(ctx, source, lambda shard_size, seed, _number: Sample(sampler(shard_size, seed)))


def fill_shards(ctx: SourceContext, source: SourceConfig, sampler: ShardSampler) -> SourceSummary:
    """Sample shard by shard until `source.n` texts survive the filters, the sample budget (10x `n`, at least
    10 shards) is drawn, or the source's yield falls under `source.min_yield`.

    Shard k is sampled with a seed derived from (run seed, source index, k) and filtered in shard order, so the set
    does not depend on interruptions nor on the number of processes: under `accelerate launch` each process samples
    every world-th shard into `raw/`, and the main process filters them in order after a barrier. A resumed run
    replays finished shards into the filter and samples exactly the shards it lost (raw shards already sampled are
    reused). Per-text columns of a `Sample` follow their texts through the filter; its stats are summed into the
    summary's details.

    What a draw costs is `Sample.drawn`: the texts it asked for (an llm source: `texts_per_request` per request
    sent, retries included, or answered from the request cache) or the texts it got, whichever is more. The budget
    counts that, so a source whose answers hold no text at all still ends. The yield is kept / drawn; once
    `YIELD_AFTER` texts are drawn, a yield under `min_yield` stops the source with a `YieldError` (one line: what
    was drawn and kept, what threw the rest away, what to change). An error, not a smaller set: a set at a few
    percent of `n` is far too small to distil, and finishing with it would go on to spend teacher labels (paid
    too, for an llm teacher) and a training run on it; the user who asked for `n` texts wants to know now and stop
    paying. Nothing drawn is lost: the shards written so far stay (a rerun replays them and stops at once without
    drawing again; with a lower `min_yield` it resumes from them), and an llm source's answers stay in the request
    cache. The last shard's overshoot does not count against the yield (`n` was reached), and the budget's end
    still finishes with fewer texts and a note, as before."""
    assert source.n is not None
    n, directory = source.n, ctx.directory
    summary, drops = SourceSummary(type=source.type, n=n), Counter[str]()
    stats: dict[str, Any] = {}
    drawn = 0
    existing = good_shards(directory)
    for path in existing:
        texts, generated, shard_drops = read_shard(path)
        ctx.text_filter.remember(texts)
        summary.generated += generated
        drawn += max(generated, shard_asked(path) or 0)
        summary.kept += len(texts)
        summary.surplus += int(shard_drops.pop("surplus", 0))
        drops.update(shard_drops)
        add_stats(stats, shard_stats(path))
    number = len(existing)
    max_drawn = max(10 * n, n + 10 * ctx.shard_size)
    raw_dir = directory / "raw"
    stop: str | None = None  # why the source stopped early (a low yield)
    exhausted = False  # a draw came back with nothing: the sampler has no more to give

    def wanted() -> bool:
        nonlocal stop
        if summary.kept >= n or exhausted:
            return False
        if stop is None:
            stop = _low_yield(ctx, source, summary, drawn, drops, stats)
        return stop is None and drawn < max_drawn

    def draw(k: int) -> Sample:
        raw_path = shard_path(raw_dir, k)
        if raw_path.exists() and parquet_damage(raw_path) is None:  # a damaged raw draw is drawn again
            return _read_sample(raw_path)
        return sampler(ctx.shard_size, _seed(ctx, k), k)

    def consume(k: int, sample: Sample) -> None:
        nonlocal drawn, exhausted
        exhausted = sample.drawn == 0
        shard_drops: Counter[str] = Counter()
        passed = ctx.text_filter.select(sample.texts, shard_drops)
        chosen = passed[: n - summary.kept]
        surplus = len(passed) - len(chosen)
        kept = [normalize(sample.texts[i]) for i in chosen]
        columns = {name: [values[i] for i in chosen] for name, values in sample.columns.items()}
        counts = shard_drops + Counter(surplus=surplus)
        path = shard_path(directory, k)
        write_shard(path, kept, len(sample.texts), counts, columns, sample.stats, sample.asked)
        summary.generated += len(sample.texts)
        drawn += sample.drawn
        summary.kept += len(kept)
        summary.surplus += surplus
        drops.update(shard_drops)
        add_stats(stats, sample.stats)
        bar.advance(len(kept))
        progress.step(f"transfer: source {ctx.index} shard {k + 1}: {summary.kept}/{n} texts")
        kill_point("transfer.shard")

    with progress.bar(f"transfer: source {ctx.index} ({source.type})", total=n, completed=summary.kept) as bar:
        if ctx.world == 1:
            while wanted():
                consume(number, draw(number))
                number += 1
        else:
            running, stop = ctx.stage.broadcast((wanted(), stop) if ctx.is_main else None)
            while running:
                mine = shard_path(raw_dir, number + ctx.rank)
                if not mine.exists():
                    _write_sample(mine, sampler(ctx.shard_size, _seed(ctx, number + ctx.rank), number + ctx.rank))
                ctx.stage.barrier()
                if ctx.is_main:
                    for k in range(number, number + ctx.world):
                        if not wanted():
                            break
                        consume(k, _read_sample(shard_path(raw_dir, k)))
                number, running, stop = ctx.stage.broadcast(
                    (number + ctx.world, wanted(), stop) if ctx.is_main else None
                )
    if stop is not None:  # raw shards already sampled stay for the rerun
        raise YieldError(stop)
    if ctx.is_main:
        number = len(list_shards(directory))
        if raw_dir.exists():
            shutil.rmtree(raw_dir)
    if summary.kept < n:
        summary.note = f"stopped after {drawn} samples with {summary.kept} kept (filters dropped the rest)"
    summary.drops, summary.shards = dict(drops), number
    if stats:
        summary.details = stats
    return summary


def _low_yield(
    ctx: SourceContext,
    source: SourceConfig,
    summary: SourceSummary,
    drawn: int,
    drops: Counter[str],
    stats: dict[str, Any],
) -> str | None:
    """The one line a source stops with when its yield is under its `min_yield` (None while it is not, or while
    fewer than `YIELD_AFTER` texts are drawn)."""
    if source.min_yield <= 0 or drawn < YIELD_AFTER or summary.kept >= source.min_yield * drawn:
        return None
    filtered = ", ".join(f"{name} {count:,}" for name, count in drops.most_common() if count) or "none"
    own = source.explain_yield(stats)
    return (
        f"{source.where(ctx.index)}: stopped early: kept {summary.kept:,} of the {drawn:,} texts drawn toward "
        f"n={source.n:,} ({100 * summary.kept / drawn:.1f}%, under its min_yield {source.min_yield:g}); thrown away "
        f"by transfer.filters: {filtered}"
        f"{'; ' + own if own else ''}. Change what it draws (the prompt or messages, the model, its sampling "
        "settings) or loosen transfer.filters, or lower min_yield (0 never stops); what it drew is kept, so a rerun "
        "resumes without paying for it again"
    )


def _seed(ctx: SourceContext, shard: int) -> int:
    return shard_seed(ctx.seed, ctx.index, shard)


def write_all(directory: Path, texts: list[str], shard_size: int) -> int:
    """Write a source that has all its texts at once (file, augment) as shards; returns the shard count."""
    clear_shards(directory)
    count = max(1, -(-len(texts) // shard_size))
    for number in range(count):
        chunk = texts[number * shard_size : (number + 1) * shard_size]
        write_shard(shard_path(directory, number), chunk, len(chunk), Counter())
    return count


def transfer_shards(root: Path) -> list[Path]:
    """Every transfer shard in source order (read them one at a time: the set may not fit in memory)."""
    if not root.exists():
        return []
    return [path for source in sorted(p for p in root.iterdir() if p.is_dir()) for path in list_shards(source)]
