"""`retrieve`: the corpus texts nearest to the labeled texts, from a large unlabeled corpus (a crawl, a dump).

Where `file` samples a user's pool uniformly, `retrieve` picks the in-domain part of a corpus too large and too
mixed to take whole: every corpus row is embedded once (cached on disk, shared by runs; see
`gendistill.data.corpus_embeddings`), indexed (`gendistill.data.ann_index`), and each labeled text asks for its
`per_query` nearest rows. Classes take turns (round-robin), so a class with few or hard-to-find examples still
gets its share of the `n`, and a text retrieved for two classes counts once. Each class takes first the
candidates a domain classifier finds to be the task's kind of text (`gendistill.data.domain_filter`): a near
neighbour in meaning can be a text of quite another kind. Copies of labeled, validation and
test texts are never kept: a test text in the transfer set would leak the test into the student's training.

Within a class, `pick: nearest` (the default) takes the nearest candidates first: the ~n/k closest rows of every
labeled text, a set crowded around the few texts a user labeled. `pick: spread` draws its share at random (seeded)
among the class's SPREAD_WIDTH x share nearest in-domain candidates, so the set covers the neighbourhood of the
labeled texts as a random draw from an in-domain pool covers the task, without reaching as far as the search went:
the domain classifier's mistakes grow with the distance (drawn among all of GoEmotions' in-domain candidates, 7x
its share, the set's own-pool share fell from 91% to 88.5%).

The encoder is by default the teacher's pretrained encoder (`teacher.model`): it exists before the transfer stage
runs, and the transfer set does not depend on the teacher's training (a retrained teacher relabels the same
texts); `encoder` names another (a sentence-transformers folder embeds topics better than a raw BERT).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from gendistill.data.ann_index import CorpusIndex, require_faiss
from gendistill.data.corpus_embeddings import TextEncoder, corpus_texts, default_cache_dir, embed_corpus
from gendistill.data.domain_filter import DEFAULT_THRESHOLD, DomainClassifier
from gendistill.data.tables import iter_unlabeled
from gendistill.errors import ConfigError
from gendistill.loading import check_model
from gendistill.sections import added
from gendistill.sources.base import SourceConfig, SourceContext, SourceSummary, normalize, write_all

if TYPE_CHECKING:
    from gendistill.config import RunConfig


# With the domain classifier on, the search goes deeper (per_query doubled, up to DEEPEST times) while fewer than
# DEEPER_UNTIL x n candidates pass it: a few labeled texts (16 per class of a 2-class task) whose nearest rows are
# half off-task would otherwise fill n with those. Twice n leaves room for the text filters and the copies dropped.
DEEPER_UNTIL = 2
DEEPEST = 16
SELECTION_VERSION = 2  # 1: by rank alone; 2: the domain classifier first, searched deeper while it passes too few
SPREAD_WIDTH = 2  # pick: spread draws a class's share among its SPREAD_WIDTH x share nearest in-domain candidates


class RetrieveSource(SourceConfig):
    """The nearest neighbours of the labeled texts in a large unlabeled corpus."""

    type: Literal["retrieve"] = "retrieve"
    corpus: str = Field(description="CSV/TSV/JSONL/Parquet/.txt (one text per line) path, or hf:NAME[:CONFIG][@SPLIT]")
    text_column: str | None = Field(default=None, description="default: data.text_column (a .txt file: text)")
    per_query: Annotated[int, Field(ge=1)] = Field(
        default=50,
        description="nearest corpus rows per labeled text (searched deeper, up to 16x, while fewer than 2n of the "
        "candidates pass the domain classifier)",
    )
    encoder: str | None = Field(
        default=None, description="encoder folder or id to embed with (default: the teacher's, teacher.model)"
    )
    domain_filter: bool = Field(
        default=True,
        description="take first the candidates a classifier on the embeddings finds more like the labeled texts "
        "than like random corpus rows (data/domain_filter.py); the rest only when those run out",
    )
    domain_threshold: Annotated[float, Field(gt=0, lt=1)] = added(
        DEFAULT_THRESHOLD,
        description="the domain classifier's probability a candidate needs to come first (balanced classes: 0.5 is "
        "as likely the task's kind of text as the corpus's; higher is stricter and searches deeper)",
    )
    pick: Literal["nearest", "spread"] = added(
        "nearest",
        description="within a class, which in-domain candidates first: the nearest to the labeled texts, or a "
        "seeded random draw among its 2 x share nearest (a set spread around the labeled texts, not crowded on them)",
    )
    max_length: Annotated[int, Field(ge=8)] = Field(default=128, description="tokens per text when embedding")
    batch_size: Annotated[int, Field(ge=1)] = 64
    cache_dir: str | None = Field(
        default=None,
        description="embeddings and index cache (default: $GENDISTILL_RETRIEVE_CACHE or ~/.cache/gendistill/retrieve)",
    )

    needs_labeled_texts = True
    supports_multi_label: ClassVar[bool] = False  # balances its picks per single class of the labeled texts

    def inputs(self, config: RunConfig) -> list[str]:
        """The corpus and, when it is a local folder, the encoder (the teacher's by default): its weights decide
        which texts are nearest."""
        encoder = self.encoder_name(config)
        return [self.corpus] + ([encoder] if encoder and Path(encoder).exists() else [])

    def key_fields(self, config: RunConfig) -> dict[str, Any]:
        """The default encoder is the teacher's model: changing `teacher.model` changes the retrieved texts. The
        selection's version too (and the spread's width): a transfer set retrieved by an earlier rule is retrieved
        again, not reused."""
        spread = {"spread_width": SPREAD_WIDTH} if self.pick == "spread" else {}
        return (
            {"selection": SELECTION_VERSION} | spread | ({} if self.encoder else {"encoder": self.encoder_name(config)})
        )

    def column(self, config: RunConfig) -> str:
        if self.text_column:
            return self.text_column
        return "text" if self.corpus.lower().endswith(".txt") else config.data.text_column

    def encoder_name(self, config: RunConfig) -> str | None:
        if self.encoder:
            return self.encoder
        init = config.teacher.student_init(Path("teacher"))
        return init[1] if init else None

    def cache_folder(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    def check(self, config: RunConfig, index: int) -> None:
        """The corpus opens and has the text column (its first rows are read), the encoder loads, faiss is
        installed: each a one-line error before any training."""
        key = f"transfer.sources[{index}]"
        require_faiss()
        column_key = f"{key}.text_column" + ("" if self.text_column else " (it defaults to data.text_column)")
        next(iter_unlabeled(self.corpus, self.column(config), rows=1, column_key=column_key), None)
        name = self.encoder_name(config)
        if name is None:
            raise ConfigError(
                f"{key}.encoder: a {config.teacher.kind!r} teacher has no encoder to embed the corpus with; "
                "name an encoder folder (e.g. a sentence-transformers model)"
            )
        check_model(name, f"{key}.encoder", getattr(config.teacher, "trust_remote_code", False))

    def build(self, ctx: SourceContext) -> SourceSummary:
        """Embed (or reuse) the corpus, search the labeled texts' neighbours, then let the classes take turns:
        each takes its next nearest candidate that passes the filters, until `n` are kept or all run dry."""
        config, name = ctx.config, self.encoder_name(ctx.config)
        assert name is not None  # check() refused a teacher without an encoder
        trust = getattr(config.teacher, "trust_remote_code", False)
        loaded: list[TextEncoder] = []

        def load_encoder() -> TextEncoder:
            if not loaded:
                loaded.append(TextEncoder(name, device=ctx.device, max_length=self.max_length, trust_remote_code=trust))
            return loaded[0]

        column, max_chars = self.column(config), config.data.max_chars
        embeddings = embed_corpus(
            self.corpus,
            column,
            max_chars=max_chars,
            encoder_name=name,
            max_length=self.max_length,
            load_encoder=load_encoder,
            cache_dir=self.cache_folder(),
            batch_size=self.batch_size,
        )
        corpus_calls = loaded[0].calls if loaded else 0
        index, index_reused = CorpusIndex.build_or_load(embeddings.file, embeddings.folder)
        labeled, labels = ctx.task.train.texts, ctx.task.train.labels
        queries = load_encoder()(labeled, self.batch_size)
        domain = DomainClassifier(queries, embeddings.file, config.seed) if self.domain_filter and labeled else None
        found = deepening_search(
            lambda depth: index.search(queries, depth),
            self.per_query,
            self.n,
            len(embeddings.file),
            (lambda rows: domain.passing(rows, self.domain_threshold)) if domain is not None else None,
        )
        spread = None
        if self.pick == "spread":
            share = -(-self.n // len(set(labels))) if self.n is not None else None  # ceil: a class's share of n
            spread = (config.seed, SPREAD_WIDTH * share if share is not None else None)
        queues = _class_queues(found.neighbours, labels, found.in_domain, spread)
        texts = _rows(self.corpus, column, max_chars, {row for queue in queues.values() for row in queue})
        held_out = {normalize(t) for split in (ctx.task.validation, ctx.task.test) if split for t in split.texts}
        labeled_set = {normalize(t) for t in labeled}
        drops: Counter[str] = Counter()
        kept: list[str] = []
        per_class: Counter[str] = Counter()
        considered = held_out_copies = 0
        limit = self.n if self.n is not None else sum(len(queue) for queue in queues.values())
        while len(kept) < limit and any(queues.values()):
            for label, queue in queues.items():
                while queue and len(kept) < limit:
                    text = texts[queue.popleft()]
                    considered += 1
                    if text in labeled_set:
                        drops["training_copy"] += 1
                    elif text in held_out:
                        held_out_copies += 1
                    elif ctx.text_filter([text], drops):
                        kept.append(text)
                        per_class[ctx.task.label_names[label]] += 1
                        break
        note = None
        if self.n is not None and len(kept) < self.n:
            note = (
                f"found {len(kept)} of n={self.n} texts among the {found.per_query} nearest corpus rows of each of "
                f"{len(labeled)} labeled texts; raise per_query, or retrieve from a larger corpus"
            )
        return SourceSummary(
            type=self.type,
            n=self.n,
            generated=considered,
            kept=len(kept),
            drops=dict(drops),
            shards=write_all(ctx.directory, kept, ctx.shard_size),
            note=note,
            details={
                "corpus": self.corpus if self.corpus.startswith("hf:") else Path(self.corpus).name,
                "corpus_rows": embeddings.rows,
                "embedded_now": embeddings.embedded_now,
                "embedded_reused": embeddings.reused,
                "embedded_copied": embeddings.copied,  # of embedded_now: identical blocks of another cached corpus
                "index_reused": index_reused,
                "corpus_encoder_calls": corpus_calls,
                "candidates": sum(len(rows) for rows in found.neighbours),
                "per_query_searched": found.per_query,
                "in_domain_candidates": None if found.in_domain is None else len(found.in_domain),  # of distinct
                "distinct_candidates": len(found.candidates),
                "held_out_copies": held_out_copies,
                "per_class": dict(per_class),
            },
        )


@dataclass(frozen=True)
class Neighbourhood:
    """Where a deepening search stopped: the depth (`per_query`), each labeled text's neighbour rows, every candidate
    row (sorted, distinct) and those the domain classifier passes (None without one)."""

    per_query: int
    neighbours: list[list[int]]
    candidates: list[int]
    in_domain: set[int] | None


def deepening_search(
    search: Callable[[int], list[list[int]]],
    per_query: int,
    n: int | None,
    corpus_rows: int,
    passing: Callable[[list[int]], set[int]] | None = None,
) -> Neighbourhood:
    """Search each labeled text's `per_query` nearest rows (`search(depth)`), then deeper (doubled, up to DEEPEST
    times the start) while fewer than DEEPER_UNTIL x n candidates pass the domain classifier (`passing`), and never
    past a depth that already covers the whole corpus. One function for the source and for the benchmark that
    measures the domain classifier's thresholds (benchmarks/retrieval_domain.py), so both search alike."""
    depth = per_query
    while True:
        neighbours = search(depth)
        candidates = sorted({row for rows in neighbours for row in rows})
        in_domain = passing(candidates) if passing is not None else None
        enough = n is None or in_domain is None or len(in_domain) >= DEEPER_UNTIL * n
        if enough or depth >= DEEPEST * per_query or len(candidates) >= corpus_rows:
            return Neighbourhood(depth, neighbours, candidates, in_domain)
        depth *= 2


def _class_queues(
    neighbours: list[list[int]],
    labels: list[int],
    in_domain: set[int] | None = None,
    spread: tuple[int, int | None] | None = None,
) -> dict[int, deque[int]]:
    """Per class, its labeled texts' neighbours interleaved by rank (every text's nearest first, then every
    text's second nearest...), each corpus row once, and in the class that reaches it at the lowest rank (ties:
    the lower class id): a row near two classes is a candidate of one. With `in_domain`, those rows come first
    (in the same order) and the others after them: the filter orders, it never shrinks what can be found. With
    `spread` = (seed, width), each class's `width` nearest in-domain rows (all of them when width is None; all its
    rows count as in-domain without `in_domain`) come in a random order drawn from that seed; the rest stay
    nearest first, after them."""
    claimed: dict[int, tuple[int, int]] = {}  # row -> (rank, class)
    for rows, label in zip(neighbours, labels, strict=True):
        for rank, row in enumerate(rows):
            if row not in claimed or (rank, label) < claimed[row]:
                claimed[row] = (rank, label)
    queues: dict[int, deque[int]] = {label: deque() for label in sorted(set(labels))}

    def order(item: tuple[int, tuple[int, int]]) -> tuple[bool, int, int]:
        row, (rank, _label) = item
        return (in_domain is not None and row not in in_domain, rank, row)

    for row, (_rank, label) in sorted(claimed.items(), key=order):
        queues[label].append(row)
    if spread is None:
        return queues
    seed, width = spread
    rng = np.random.default_rng(seed)
    for label, queue in queues.items():
        rows = list(queue)
        first = [row for row in rows if in_domain is None or row in in_domain][:width]  # a prefix: ordered first
        queues[label] = deque([first[i] for i in rng.permutation(len(first))] + rows[len(first) :])
    return queues


def _rows(spec: str, column: str, max_chars: int, wanted: set[int]) -> dict[int, str]:
    """The texts of the `wanted` corpus rows, in one streaming pass (the corpus is never whole in memory)."""
    found: dict[int, str] = {}
    position = 0
    for batch in corpus_texts(spec, column, max_chars):
        for text in batch:
            if position in wanted:
                found[position] = text
            position += 1
    return found
