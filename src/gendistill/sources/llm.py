"""`llm`: class-conditional texts written by a served LLM through an OpenAI-compatible API (the prompted mode of
GAL / ZeroGen).

Each request asks for `texts_per_request` texts of one class: its prompt holds `examples_per_request` labeled texts
of that class (rotated, so every labeled text is shown before any is shown twice), the class names and their
descriptions (`data.label_descriptions`), and one value drawn per diversity attribute. Requests go round the
classes, so every class gets the same number of requests. Shards stay the unit of resume: shard k's requests are a
function of (run seed, source index, k) alone, and every answer is cached on disk as it arrives, so a rerun after a
crash sends only the requests that were never answered and writes the same set. Each text keeps the class it was
requested for (`requested_label`), which the report compares with the teacher's label.

In a multi-label task each request asks for texts that carry a set of labels together. The sets are the labeled
rows' own non-empty label sets, shuffled once (by the run seed and the source index) and taken in turn, so labels
co-occur in the requests as often as in the labeled data and a set never seen there is never asked for (a row with
no label is no set to ask for: texts without a given label are the texts asked for with other labels). The prompt
(its own default template) names every label of the set with its description and shows `examples_per_request`
labeled texts carrying at least one of them (rotated per set). Everything else (filters, dedup, early stop, the
cache, resume) is the single-label path; `requested_label` then holds the list of label ids asked for, and the
report says how many of them the teacher gives (its per-label decision, logit >= 0). The teacher labels every text
anyway: the set asked for only steers what gets written.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
import pyarrow.parquet as pq
from pydantic import Field

from gendistill.errors import ConfigError, DataError
from gendistill.io import read_json
from gendistill.llm.cache import RequestCache
from gendistill.llm.client import Client, Request, check_server
from gendistill.llm.parse import choice_text, parse_list
from gendistill.llm.prompts import check_templates, render, render_messages
from gendistill.llm.settings import ServedModel
from gendistill.sources.base import (
    Sample,
    SourceConfig,
    SourceContext,
    SourceSummary,
    fill_shards,
    list_shards,
    source_dir,
)

if TYPE_CHECKING:
    from gendistill.config import RunConfig
    from gendistill.llm.client import Request
    from gendistill.pipeline.layout import RunLayout

REQUESTED = "requested_label"  # the shard column holding the class (multi-label: the label ids) each text was asked for
MULTI_LABEL_SCOPE = "multi_label"  # the cache scope of multi-label requests (see gendistill.llm.cache)
_BARE_MARKER = re.compile(r"^\s*(?:\(?\d{1,3}[.):\]]|#\d{1,3}[.:)]?|[-*•])\s*$")


class LLMSource(ServedModel, SourceConfig):
    """Ask a served LLM for `n` texts (after cleaning), class by class."""

    type: Literal["llm"] = "llm"
    supports_multi_label: ClassVar[bool] = True  # multi-label: asks for the labeled rows' own label sets
    n: Annotated[int, Field(ge=1)] = Field(description="texts to keep after the filters")
    texts_per_request: Annotated[int, Field(ge=1, le=100)] = Field(default=5, description="texts asked per request")
    examples_per_request: Annotated[int, Field(ge=0, le=100)] = Field(
        default=3, description="labeled texts of the class shown in each prompt (0: zero-shot)"
    )
    attributes: dict[str, Annotated[list[str], Field(min_length=1)]] = Field(
        default_factory=dict,
        description="diversity attributes: name -> values, one value drawn per request (e.g. tone: [calm, angry])",
    )
    temperature: Annotated[float, Field(ge=0)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] = 512
    stop: list[str] | None = Field(default=None, description="stop sequences (default: a blank line for completions)")
    request_seed: bool = Field(default=True, description="send a per-request seed (servers that honour it repeat)")

    def check(self, config: RunConfig, index: int) -> None:
        where = f"transfer.sources[{index}]"
        if self.api == "chat":
            templates = [(f"{where}.messages[{i}]", m.content) for i, m in enumerate(self.chat_template())]
        else:
            templates = [(f"{where}.prompt", self.completion_template())]
        sample = {
            "label": "a class",
            "description": "",
            "labels": ["a class", "another class"],
            "descriptions": {},
            "examples": ["an example text"],
            "count": self.texts_per_request,
            "attributes": {name: values[0] for name, values in self.attributes.items()},
            "multi_label": False,
            "label_set": ["a class"],
        }
        problem = check_templates(templates, sample)
        if problem:
            raise ConfigError(problem)
        check_server(self, where)

    def build(self, ctx: SourceContext) -> SourceSummary:
        with RequestCache(ctx.layout.llm_cache) as cache:
            summary = fill_shards(ctx, self, _Writer(self, ctx, cache).sample)
        summary.details = {"model": self.model, "api": self.api, **(summary.details or {})}
        return summary

    def explain_yield(self, stats: dict[str, Any]) -> str:
        lines = Counter({k: v for k, v in (stats.get("lines_dropped") or {}).items() if v})
        parts = [
            f"{self.model} was asked for {stats.get('texts_asked', 0):,} texts in {stats.get('attempts', 0):,} "
            f"tries ({stats.get('retries', 0):,} of them retries) and {stats.get('cached', 0):,} cached answers, "
            f"and wrote {stats.get('texts_parsed', 0):,}"
        ]
        if stats.get("empty_answers"):
            parts.append(f"{stats['empty_answers']:,} answers were empty")
        if lines:
            parts.append("lines that held no text: " + ", ".join(f"{k} {v:,}" for k, v in lines.most_common()))
        return "; ".join(parts)

    def report(self, layout: RunLayout, index: int, row: Any) -> list[str]:
        details = row.details if isinstance(row.details, dict) else {}
        agreement = requested_label_agreement(layout, source_dir(layout.transfer, index, self).name)
        if agreement is not None:
            details["requested_label_agreement"] = agreement
            row.details = details
        requests = details.get("requests", 0)
        note = (
            f"{self.where(index)}: {requests} requests answered by {self.model} ({details.get('cached', 0)} more "
            f"from the request cache; {details.get('retries', 0)} retries, {details.get('failed', 0)} failed), "
            f"{details.get('prompt_tokens', 0):,} prompt + {details.get('completion_tokens', 0):,} completion tokens, "
            f"{details.get('seconds', 0):.1f} s"
        )
        if agreement is not None and agreement.get("multi_label"):
            note += (
                f"; the teacher gives {100 * agreement['overall']:.1f}% of the labels requested for its "
                f"{agreement['texts']} texts (exactly the requested set: {100 * agreement['exact']:.1f}%)"
            )
        elif agreement is not None:
            note += (
                f"; the teacher's label is the requested class for {100 * agreement['overall']:.1f}% of its "
                f"{agreement['texts']} texts"
            )
        return [note]


class _Writer:
    """The requests of each shard and what their answers hold."""

    def __init__(self, source: LLMSource, ctx: SourceContext, cache: RequestCache):
        self.source, self.ctx = source, ctx
        self.label_names = ctx.task.label_names
        self.descriptions = dict(ctx.config.data.label_descriptions or {})
        self.client = Client(source, cache, source.where(ctx.index), seed=ctx.seed)
        self.multi_label = ctx.task.multi_label
        self.texts = ctx.task.train.texts
        if self.multi_label:
            where = source.where(ctx.index)
            self.plan = label_set_plan(ctx.task.train.labels, f"{ctx.seed}/{ctx.index}/label_sets", where)
            self.turns, self.plan_counts = plan_turns(self.plan)
            self.rows_with = [
                [row for row, labels in enumerate(ctx.task.train.labels) if label in labels]
                for label in range(len(self.label_names))
            ]
            self.set_pool = lru_cache(maxsize=256)(self._set_pool)
            return
        self.pools = []
        for label in range(len(self.label_names)):
            texts = [t for t, y in zip(ctx.task.train.texts, ctx.task.train.labels, strict=True) if y == label]
            random.Random(f"{ctx.seed}/{ctx.index}/examples/{label}").shuffle(texts)
            self.pools.append(texts)

    def target(self, global_request: int) -> int | tuple[int, ...]:
        """What request number `global_request` asks for: a class (round the classes), or in a multi-label task
        a label set (round the plan)."""
        if self.multi_label:
            return self.plan[global_request % len(self.plan)]
        return global_request % len(self.label_names)

    def variables(self, target: int | tuple[int, ...], global_request: int, rng: random.Random) -> dict[str, Any]:
        source = self.source
        attributes = {key: rng.choice(values) for key, values in sorted(source.attributes.items())}
        if isinstance(target, tuple):
            return self._set_variables(target, global_request, attributes)
        name, pool = self.label_names[target], self.pools[target]
        count = min(source.examples_per_request, len(pool))
        turn = global_request // len(self.label_names)  # how many requests this class had before this one
        examples = [pool[(turn * count + i) % len(pool)] for i in range(count)]
        return {
            "label": name,
            "description": self.descriptions.get(name, ""),
            "labels": list(self.label_names),
            "descriptions": self.descriptions,
            "examples": examples,
            "count": source.texts_per_request,
            "attributes": attributes,
            "multi_label": False,
            "label_set": [name],
        }

    def _set_variables(
        self, labels: tuple[int, ...], global_request: int, attributes: dict[str, str]
    ) -> dict[str, Any]:
        """The variables of a multi-label request for `labels`: examples rotate through the labeled texts that carry
        at least one of them, so every such text is shown before any is shown twice for this set."""
        names = [self.label_names[label] for label in labels]
        pool = self.set_pool(labels)
        count = min(self.source.examples_per_request, len(pool))
        position = global_request % len(self.plan)
        turn = self.turns[position] + (global_request // len(self.plan)) * self.plan_counts[labels]
        return {
            "label": ", ".join(names),
            "description": "",
            "labels": list(self.label_names),
            "descriptions": self.descriptions,
            "examples": [pool[(turn * count + i) % len(pool)] for i in range(count)],
            "count": self.source.texts_per_request,
            "attributes": attributes,
            "multi_label": True,
            "label_set": names,
        }

    def _set_pool(self, labels: tuple[int, ...]) -> list[str]:
        rows = sorted({row for label in labels for row in self.rows_with[label]})
        random.Random(f"{self.ctx.seed}/{self.ctx.index}/examples/{'-'.join(map(str, labels))}").shuffle(rows)
        return [self.texts[row] for row in rows]

    def request(self, variables: dict[str, Any], seed: int) -> tuple[Request, str]:
        """The request and, for completions, the end of the prompt its answer continues (e.g. "4.")."""

        source, multi = self.source, self.multi_label
        body: dict[str, Any] = {"model": source.model}
        prefix = ""
        if source.api == "chat":
            body["messages"] = render_messages(source.chat_template(multi), variables)
            path = "chat/completions"
        else:
            prompt = render(source.completion_template(multi), variables)
            body["prompt"] = prompt
            path = "completions"
            last_line = prompt.rsplit("\n", 1)[-1]
            prefix = last_line + " " if _BARE_MARKER.match(last_line) else ""
        body["max_tokens"] = source.max_tokens
        body["temperature"] = source.temperature
        if source.top_p is not None:
            body["top_p"] = source.top_p
        stop = source.stop if source.stop is not None else (["\n\n"] if source.api == "completions" else None)
        if stop:
            body["stop"] = stop
        if source.request_seed:
            body["seed"] = seed
        body.update(source.extra_body)
        return Request(path, body, scope=MULTI_LABEL_SCOPE if multi else ""), prefix

    def sample(self, shard_size: int, seed: int, number: int) -> Sample:
        source = self.source
        per_shard = math.ceil(shard_size / source.texts_per_request)
        planned = []
        for j in range(per_shard):
            global_request = number * per_shard + j
            target = self.target(global_request)
            rng = random.Random(f"{seed}/{j}")
            request, prefix = self.request(self.variables(target, global_request, rng), rng.randrange(2**31))
            planned.append((request, prefix, list(target) if isinstance(target, tuple) else target))
        before = self.client.usage.to_dict()
        answers = self.client.run([request for request, _, _ in planned])
        texts: list[str] = []
        requested: list[Any] = []  # a class id per text (multi-label: a list of label ids)
        dropped: Counter[str] = Counter()
        empty = 0
        for (_, prefix, label), answer in zip(planned, answers, strict=True):
            for choice in answer["choices"]:
                content = choice_text(choice)
                if not content.strip():
                    empty += 1
                    continue
                parsed = parse_list(content, prefix)
                texts += parsed.texts
                requested += [label] * len(parsed.texts)
                dropped.update(parsed.dropped)
        # shuffled (by the shard's seed), so that the cut of a shard's surplus falls on no class in particular
        order = list(range(len(texts)))
        random.Random(seed).shuffle(order)
        texts, requested = [texts[i] for i in order], [requested[i] for i in order]
        usage = self.client.usage.since(before)
        # what the shard paid for: every text asked, in every try of a request (retries too) or from the cache
        asked = source.texts_per_request * (usage["attempts"] + usage["cached"])
        stats = {**usage, "texts_asked": asked, "texts_parsed": len(texts), "empty_answers": empty}
        stats["lines_dropped"] = dict(dropped)
        return Sample(texts, {REQUESTED: requested}, stats, asked=asked)


def label_set_plan(label_sets: list[list[int]], seed: str, where: str) -> list[tuple[int, ...]]:
    """The label sets a multi-label llm source asks for, in turn: every labeled row's non-empty set (repeats kept, so
    a set is asked for as often as rows carry it), shuffled by `seed`; one line when no row carries a label."""
    plan = [tuple(labels) for labels in label_sets if labels]
    if not plan:
        raise DataError(
            f"{where}: the task is multi-label and no labeled row carries a label, so there is no label set to ask "
            "the LLM for; label some rows, or use a file, generate or augment source"
        )
    random.Random(seed).shuffle(plan)
    return plan


def plan_turns(plan: list[tuple[int, ...]]) -> tuple[list[int], Counter[tuple[int, ...]]]:
    """For each position of the plan, how many earlier positions ask for the same set; and each set's count (how
    many turns one pass over the plan gives it)."""
    seen: Counter[tuple[int, ...]] = Counter()
    turns = []
    for labels in plan:
        turns.append(seen[labels])
        seen[labels] += 1
    return turns, seen


def requested_label_agreement(layout: RunLayout, folder: str) -> dict[str, Any] | None:
    """How often the teacher's label (argmax of its logits) is the class each text was requested for: overall and
    per class (by name); in a multi-label task (lists requested), see `requested_set_agreement`. None when the
    shards carry no requested class or are not labeled."""
    requested: list[Any] = []
    logits: list[list[float]] = []
    for shard in list_shards(layout.transfer / folder):
        labeled = layout.labels / folder / shard.name
        table = pq.read_table(shard)
        if REQUESTED not in table.column_names or not labeled.exists():
            return None
        requested += table.column(REQUESTED).to_pylist()
        logits += pq.read_table(labeled).column("logits").to_pylist()
    if not requested or len(requested) != len(logits):
        return None
    names = read_json(layout.label_names)
    if isinstance(requested[0], list):
        return requested_set_agreement(requested, np.asarray(logits) >= 0, names)
    wanted, got = np.asarray(requested), np.asarray([int(np.argmax(row)) for row in logits])
    per_class = {
        names[label]: round(float(np.mean(got[wanted == label] == label)), 4)
        for label in range(len(names))
        if np.any(wanted == label)
    }
    return {"overall": round(float(np.mean(wanted == got)), 4), "texts": len(requested), "per_class": per_class}


def requested_set_agreement(requested: list[list[int]], given: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Multi-label: the share of requested (text, label) pairs the teacher gives (`given`: its per-label decisions,
    texts x labels), overall and per label, and the share of texts whose teacher set is exactly the requested one."""
    hits = np.zeros(len(names))
    asked = np.zeros(len(names))
    exact = 0
    for labels, row in zip(requested, given, strict=True):
        asked[labels] += 1
        hits[labels] += row[labels]
        exact += set(labels) == set(np.flatnonzero(row).tolist())
    per_class = {
        names[label]: round(float(hits[label] / asked[label]), 4) for label in range(len(names)) if asked[label]
    }
    return {
        "multi_label": True,
        "overall": round(float(hits.sum() / asked.sum()), 4) if asked.sum() else 0.0,
        "exact": round(exact / len(requested), 4),
        "texts": len(requested),
        "per_class": per_class,
    }
