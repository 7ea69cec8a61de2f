"""`llm` teacher: zero- or few-shot annotation by a served LLM through an OpenAI-compatible API, as soft labels.

Each class has a verbalizer, the word the LLM should answer (default: the class name). Two ways to a soft label:
- `logprobs`: one request per text for a single answer token with its `top_logprobs` candidates; each candidate
  adds its probability to the class whose verbalizer it begins (`gendistill.llm.parse.match_token`), and the
  classes' shares of that covered mass are the soft label (the mass itself is recorded: a low one says the
  prompt or the verbalizers do not fit the model);
- `samples`, for servers that return no log-probabilities (`transformers serve`, some hosted APIs): `samples`
  answers per text (one request with `n`, or one request each where `n` is ignored), soft label = smoothed vote
  frequencies.
`logprobs: auto` asks the server once, when the teacher stage runs, and keeps the answer in teacher/teacher.json,
so every text of the run is labeled the same way; the report says which was used. There is nothing to train: the
teacher stage writes that file (verbalizers, the few-shot examples drawn from the labeled set) and nothing else.
What labeling cost (requests, tokens, seconds) accumulates in teacher/usage.json for the report.

A multi-label task (each text any number of labels) gets its own default prompt: it lists the labels and asks for
every one that applies, comma-separated, or "none" (the data layer reads an empty label list as "no label applies",
a valid answer in every multi-label task, so the prompt always offers it). Each sampled answer is read into a set of
labels (`gendistill.llm.parse.parse_label_set`: names that are no label are ignored and counted; an answer naming
nothing is no vote); each label's probability is its share of the votes, smoothed per label like the single-label
votes ((votes + smoothing) / (valid answers + 2 x smoothing): never exactly 0 or 1), and the teacher's logits are
log(p / (1 - p)), which the pipeline's per-label sigmoid reads back as p. Only votes: first-token log-probabilities
score one answer token, not a set of labels, so `logprobs: auto` samples in a multi-label task and `logprobs: yes`
is refused at preflight in one line. Multi-label requests are cached under their own scope (`Request.scope`), so
they never reuse an answer given to a single-label prompt.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from gendistill import progress
from gendistill.errors import ConfigError, RunDirError
from gendistill.io import read_json, write_json
from gendistill.llm.cache import RequestCache
from gendistill.llm.client import Client, Request, RequestRejected, check_server
from gendistill.llm.parse import (
    NONE_ANSWERS,
    choice_text,
    first_token_logprobs,
    label_vote_probabilities,
    logprob_soft_label,
    match_answer,
    normalize_word,
    parse_label_set,
    probability_logits,
    soft_label_logits,
    vote_soft_label,
)
from gendistill.llm.prompts import check_templates, render, render_messages
from gendistill.llm.settings import ServedModel
from gendistill.pipeline.layout import RunLayout
from gendistill.sources.base import add_stats
from gendistill.teachers.base import FitContext, TeacherConfig

if TYPE_CHECKING:
    import torch

    from gendistill.llm.client import Client, Request

PROBE_TEXT = "The quick brown fox jumps over the lazy dog."
WHERE = "teacher (llm)"
MULTI_LABEL_SCOPE = "multi_label"  # the cache scope of multi-label requests (see gendistill.llm.cache)
SEPARATORS = (",", ";", "|", "\n")  # what splits a multi-label answer: no verbalizer may hold one


class LLMTeacher(ServedModel, TeacherConfig):
    """A served LLM that labels texts."""

    kind: Literal["llm"] = "llm"
    verbalizers: dict[str, str] = Field(
        default_factory=dict, description="class name -> the word the LLM answers for it (default: the name)"
    )
    shots: Annotated[int, Field(ge=0, le=64)] = Field(
        default=0, description="labeled examples per class shown in every prompt (few-shot); 0: zero-shot"
    )
    logprobs: Literal["auto", "yes", "no"] = Field(
        default="auto",
        description="soft labels from first-token log-probabilities (yes), from sampled answers (no), or whichever "
        "the server supports (auto: asked once when the teacher stage runs)",
    )
    top_logprobs: Annotated[int, Field(ge=1, le=20)] = Field(default=20, description="candidates per answer token")
    samples: Annotated[int, Field(ge=1, le=128)] = Field(default=5, description="answers per text without logprobs")
    temperature: Annotated[float, Field(ge=0)] = Field(default=1.0, description="sampling temperature of answers")
    max_tokens: Annotated[int, Field(ge=1)] = Field(default=8, description="tokens per sampled answer")
    smoothing: Annotated[float, Field(ge=0)] = Field(
        default=0.5, description="added to every class's vote count (sampled answers)"
    )
    min_probability: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=1e-4, description="floor of a class's probability before the log (finite teacher logits)"
    )

    needs_labeled_texts = False
    how_trained = "prompted, not trained"
    template_task = "annotate"
    supports_multi_label: ClassVar[bool] = True  # every label that applies, asked for and voted on per label

    def check(self) -> None:
        if self.api == "chat":
            templates = [(f"teacher.messages[{i}]", m.content) for i, m in enumerate(self.chat_template())]
        else:
            templates = [("teacher.prompt", self.completion_template())]
        sample = {
            "text": "a text",
            "labels": ["a class", "another class"],
            "verbalizers": ["a", "another"],
            "descriptions": {},
            "examples": [{"text": "an example", "label": "a class", "answer": "a"}],
            "multi_label": False,
        }
        problem = check_templates(templates, sample)
        if problem:
            raise ConfigError(problem)
        check_server(self, "teacher")

    def check_multi_label(self, label_names: list[str]) -> None:
        """Preflight of a multi-label task: labels come from sampled answers only, and each verbalizer must be
        readable inside a comma-separated answer."""
        if self.logprobs == "yes":
            raise ConfigError(
                "teacher.logprobs: yes, but the task is multi-label and the llm teacher reads its labels from sampled "
                "answers only (a first token's log-probabilities score one label, not a set); set teacher.logprobs: "
                "auto (or no)"
            )
        self.verbalizer_list(label_names, multi_label=True)

    def verbalizer_list(self, label_names: list[str], multi_label: bool = False) -> list[str]:
        """One verbalizer per class, in label order; a one-line error for a name that is no class, or for two
        verbalizers whose first tokens could not be told apart (`multi_label`: whose answers could not, or one that
        a comma-separated answer could not hold)."""

        unknown = [name for name in self.verbalizers if name not in label_names]
        if unknown:
            raise ConfigError(
                f"teacher.verbalizers: {unknown[0]!r} is not a class name (classes: {', '.join(label_names)})"
            )
        words = [self.verbalizers.get(name, name) for name in label_names]
        normalized = [normalize_word(word) for word in words]
        for i, word in enumerate(normalized):
            if not word:
                raise ConfigError(f"teacher.verbalizers: the verbalizer of {label_names[i]!r} is empty")
            if multi_label:
                _check_multi_label_verbalizer(words[i], label_names[i])
            by_first_token = self.logprobs != "no" and not multi_label  # multi-label: sampled answers only
            for j in range(len(normalized)):
                other = normalized[j]
                if i != j and (other == word or (by_first_token and other.startswith(word.split()[0]))):
                    raise ConfigError(
                        f"teacher.verbalizers: {words[i]!r} ({label_names[i]}) and {words[j]!r} ({label_names[j]}) "
                        "begin alike, so the LLM's answers (and first tokens) cannot tell them apart; give each class "
                        "a verbalizer that begins differently (teacher.verbalizers: {class: word})"
                    )
        return words

    def fit(self, ctx: FitContext) -> dict[str, Any]:

        if ctx.multi_label:
            self.check_multi_label(ctx.label_names)
        verbalizers = self.verbalizer_list(ctx.label_names, ctx.multi_label)
        pick = few_shot_label_sets if ctx.multi_label else few_shot_examples
        examples = pick(ctx.train.texts, ctx.train.labels, ctx.label_names, verbalizers, self.shots, ctx.seed)
        state: dict[str, Any] = {
            "kind": self.kind,
            "model": self.model,
            "api": self.api,
            "label_names": list(ctx.label_names),
            "verbalizers": verbalizers,
            "descriptions": ctx.label_descriptions,
            "examples": examples,
            **({"multi_label": True} if ctx.multi_label else {}),
        }
        with RequestCache(RunLayout(ctx.out_dir.parent).llm_cache) as cache:
            client = Client(self, cache, WHERE, seed=ctx.seed)
            labeler = _Labeler(self, state, client)
            mode, why = "samples", "teacher.logprobs: no"
            if ctx.multi_label:
                why = "a multi-label task: per-label votes of sampled answers"
            elif self.logprobs != "no":
                supported, why = labeler.probe_logprobs()
                if supported:
                    mode = "logprobs"
                elif self.logprobs == "yes":
                    raise ConfigError(
                        f"teacher.logprobs: yes, but {self.model} at {self.endpoint} gives no log-probabilities "
                        f"({why}); set teacher.logprobs: auto (or no) to label from sampled answers"
                    )
            state["soft_labels"], state["why"] = mode, why
            state["n_supported"] = labeler.probe_n() if mode == "samples" and self.samples > 1 else False
            probe_usage = client.usage.to_dict()
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(ctx.out_dir / "teacher.json", state)
        return {"soft_labels": mode, "why": why, "n_supported": state["n_supported"], "probe": probe_usage}

    def load(self, directory: Path, device: torch.device | str) -> LoadedLLMTeacher:
        return LoadedLLMTeacher(self, directory)


def _check_multi_label_verbalizer(word: str, name: str) -> None:
    """A verbalizer that a comma-separated answer can hold: no separator in it, and not a word that means "none"."""
    separator = next((mark for mark in SEPARATORS if mark in word), None)
    if separator is not None:
        raise ConfigError(
            f"teacher.verbalizers: the verbalizer {word!r} of {name!r} holds {separator!r}, which separates the labels "
            "of a multi-label answer; give it a verbalizer without one (teacher.verbalizers: {label: word})"
        )
    if normalize_word(word) in NONE_ANSWERS:
        raise ConfigError(
            f"teacher.verbalizers: the verbalizer {word!r} of {name!r} reads as 'no label applies' in a multi-label "
            "answer; give it another word (teacher.verbalizers: {label: word})"
        )


def few_shot_label_sets(
    texts: list[str],
    label_sets: list[list[int]],
    label_names: list[str],
    verbalizers: list[str],
    shots: int,
    seed: int = 0,
) -> list[dict[str, str]]:
    """Multi-label few-shot examples: `shots` texts carrying each label (fewer where fewer do) and `shots` texts
    with no label (when the labeled set has some: "none" is an answer the model must see), each text once,
    interleaved group by group so that no label comes last in every prompt. Each answer is the text's verbalizers
    joined with ", " (label order), or "none"."""
    if shots == 0:
        return []
    rng = random.Random(seed)
    groups = [[i for i, labels in enumerate(label_sets) if label in labels] for label in range(len(label_names))]
    groups.append([i for i, labels in enumerate(label_sets) if not labels])
    taken: set[int] = set()
    picks = []
    for members in groups:
        fresh = [i for i in rng.sample(members, len(members)) if i not in taken][:shots]
        taken.update(fresh)
        picks.append(fresh)
    return [
        {
            "text": texts[members[i]],
            "label": ", ".join(label_names[y] for y in label_sets[members[i]]) or "none",
            "answer": ", ".join(verbalizers[y] for y in label_sets[members[i]]) or "none",
        }
        for i in range(shots)
        for members in picks
        if i < len(members)
    ]


def few_shot_examples(
    texts: list[str], labels: list[int], label_names: list[str], verbalizers: list[str], shots: int, seed: int = 0
) -> list[dict[str, str]]:
    """`shots` labeled texts per class (fewer where a class has fewer), interleaved class by class so that no class
    comes last in every prompt; [] in a zero-label start."""
    if shots == 0:
        return []
    rng = random.Random(seed)
    by_class = []
    for label in range(len(label_names)):
        members = [text for text, y in zip(texts, labels, strict=True) if y == label]
        by_class.append(rng.sample(members, min(shots, len(members))))
    return [
        {"text": members[i], "label": label_names[label], "answer": verbalizers[label]}
        for i in range(shots)
        for label, members in enumerate(by_class)
        if i < len(members)
    ]


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "little") % 2**31


class _Labeler:
    """Builds a teacher's requests and reads soft labels out of the answers."""

    def __init__(self, config: LLMTeacher, state: dict[str, Any], client: Client):
        self.config, self.state, self.client = config, state, client
        self.verbalizers: list[str] = state["verbalizers"]
        self.multi_label = bool(state.get("multi_label", False))

    def request(self, text: str, **fields: Any) -> Request:

        config, state, multi = self.config, self.state, self.multi_label
        variables = {
            "text": text,
            "labels": state["label_names"],
            "verbalizers": self.verbalizers,
            "descriptions": state.get("descriptions", {}),
            "examples": state["examples"],
            "multi_label": multi,
        }
        body: dict[str, Any] = {"model": config.model}
        if config.api == "chat":
            body["messages"] = render_messages(config.chat_template(multi), variables)
        else:
            body["prompt"] = render(config.completion_template(multi), variables)
        body.update(fields)
        body.update(config.extra_body)
        path = "chat/completions" if config.api == "chat" else "completions"
        return Request(path, body, scope=MULTI_LABEL_SCOPE if multi else "")

    def logprob_fields(self) -> dict[str, Any]:
        # temperature 1: whatever a server does with temperature, the candidates' probabilities are the model's
        if self.config.api == "chat":
            return {"max_tokens": 1, "temperature": 1.0, "logprobs": True, "top_logprobs": self.config.top_logprobs}
        return {"max_tokens": 1, "temperature": 1.0, "logprobs": self.config.top_logprobs}

    def probe_logprobs(self) -> tuple[bool, str]:
        """Whether the server returns first-token candidates; the reason in words."""

        try:
            (answer,) = self.client.run([self.request(PROBE_TEXT, **self.logprob_fields())])
        except RequestRejected as error:
            return False, f"the server refused logprobs: HTTP {error.status}: {error.detail[:120]}"
        if first_token_logprobs(answer["choices"][0]):
            return True, "the server returned first-token log-probabilities"
        return False, "the server's answer held no log-probabilities"

    def probe_n(self) -> bool:
        """Whether one request with `n` gets `n` answers (else each sample is its own request)."""

        fields = {"max_tokens": 1, "temperature": 1.0, "n": 2, "seed": _seed("probe")}
        try:
            (answer,) = self.client.run([self.request(PROBE_TEXT, **fields)])
        except RequestRejected:
            return False
        return len(answer["choices"]) >= 2

    def soft_labels(self, texts: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
        """(probabilities [texts, labels], counters: covered mass or unmatched answers)."""
        if self.state["soft_labels"] == "logprobs":
            return self._from_logprobs(texts)
        return self._from_samples(texts)

    def _from_logprobs(self, texts: list[str]) -> tuple[np.ndarray, dict[str, Any]]:

        def has_candidates(answer: dict[str, Any]) -> str | None:
            return None if first_token_logprobs(answer["choices"][0]) else "no_logprobs"

        answers = self.client.run([self.request(text, **self.logprob_fields()) for text in texts], has_candidates)
        rows, covered = [], []
        for answer in answers:
            probabilities, mass = logprob_soft_label(first_token_logprobs(answer["choices"][0]), self.verbalizers)
            rows.append(probabilities)
            covered.append(mass)
        stats = {"covered_mass_sum": float(np.sum(covered)), "uncovered_texts": int(np.sum(np.asarray(covered) == 0))}
        return np.asarray(rows), stats

    def _from_samples(self, texts: list[str]) -> tuple[np.ndarray, dict[str, Any]]:

        config = self.config
        k = config.samples
        fields = {"max_tokens": config.max_tokens, "temperature": config.temperature}
        if self.state.get("n_supported") and k > 1:

            def enough(answer: dict[str, Any]) -> str | None:
                return None if len(answer["choices"]) >= k else "too_few_choices"

            requests = [self.request(text, **fields, n=k, seed=_seed(text)) for text in texts]
            answers = self.client.run(requests, enough)
            contents = [[choice_text(choice) for choice in answer["choices"][:k]] for answer in answers]
        else:
            requests = [self.request(text, **fields, seed=_seed(i, text)) for text in texts for i in range(k)]
            answers = self.client.run(requests)
            flat = [choice_text(answer["choices"][0]) for answer in answers]
            contents = [flat[i * k : (i + 1) * k] for i in range(len(texts))]
        if self.multi_label:
            return self._label_set_votes(contents)
        rows, unmatched = [], 0
        for answer_texts in contents:
            votes = [match_answer(content, self.verbalizers) for content in answer_texts]
            unmatched += sum(vote is None for vote in votes)
            rows.append(vote_soft_label(votes, len(self.verbalizers), config.smoothing))
        return np.asarray(rows), {"answers": len(texts) * k, "unmatched_answers": unmatched}

    def _label_set_votes(self, contents: list[list[str]]) -> tuple[np.ndarray, dict[str, Any]]:
        """Per-label vote probabilities from each text's sampled answers (multi-label); counts the answers that
        named nothing (no vote) and the names in them that are no label (ignored)."""
        rows, unmatched, unknown = [], 0, 0
        for answer_texts in contents:
            parsed = [parse_label_set(content, self.verbalizers) for content in answer_texts]
            unmatched += sum(answer.labels is None for answer in parsed)
            unknown += sum(len(answer.unknown) for answer in parsed)
            votes = [answer.labels for answer in parsed]
            rows.append(label_vote_probabilities(votes, len(self.verbalizers), self.config.smoothing))
        answers = sum(len(answer_texts) for answer_texts in contents)
        return np.asarray(rows), {"answers": answers, "unmatched_answers": unmatched, "unknown_labels": unknown}


class LoadedLLMTeacher:
    """The teacher as the label and evaluate stages use it."""

    def __init__(self, config: LLMTeacher, directory: Path):
        self.config, self.directory = config, Path(directory)
        path = self.directory / "teacher.json"
        if not path.exists():
            raise RunDirError(f"{path} is missing; rerun the teacher stage (gendistill train-teacher RUN_DIR)")
        self.state = read_json(path)

    @property
    def usage_path(self) -> Path:
        return self.directory / "usage.json"

    def logits(self, texts: list[str], batch_size: int) -> np.ndarray:
        """log(soft label) per text (see `gendistill.llm.parse.soft_label_logits`), in input order; in a
        multi-label task each label's log-odds log(p / (1 - p)) (`gendistill.llm.parse.probability_logits`)."""

        labels = len(self.state["label_names"])
        if not texts:
            return np.zeros((0, labels), dtype=np.float32)
        chunk = max(batch_size, 4 * self.config.max_concurrency)
        rows: list[np.ndarray] = []
        stats: dict[str, Any] = {}
        with RequestCache(RunLayout(self.directory.parent).llm_cache) as cache:
            client = Client(self.config, cache, WHERE)
            labeler = _Labeler(self.config, self.state, client)
            for start in range(0, len(texts), chunk):
                before = client.usage.requests
                probabilities, chunk_stats = labeler.soft_labels(texts[start : start + chunk])
                rows.append(probabilities)
                _add(stats, chunk_stats)
                if client.usage.requests > before:
                    stats["texts_sent"] = stats.get("texts_sent", 0) + len(probabilities)
                progress.step(f"teacher (llm): {min(start + chunk, len(texts))}/{len(texts)} texts labeled")
        stats["texts"] = len(texts)
        self._record(client.usage.to_dict(), stats)
        to_logits = probability_logits if self.state.get("multi_label") else soft_label_logits
        return to_logits(np.concatenate(rows), self.config.min_probability)

    def _record(self, usage: dict[str, Any], stats: dict[str, Any]) -> None:
        """Add this call's counters to teacher/usage.json (what labeling cost over the whole run); under a file
        lock, since under `accelerate launch` every process labels its share of the shards."""
        from filelock import FileLock

        with FileLock(str(self.directory / ".usage.lock")):
            total = read_json(self.usage_path) if self.usage_path.exists() else {}
            _add(total, {**usage, **stats})
            write_json(self.usage_path, total)

    def describe(self) -> dict[str, Any]:
        usage = read_json(self.usage_path) if self.usage_path.exists() else {}
        seconds, sent = usage.get("seconds", 0.0), usage.get("texts_sent", 0)
        mode = self.state["soft_labels"]
        row: dict[str, Any] = {
            "params": None,
            "size_bytes": None,
            "model": self.config.model,
            "api": self.config.api,
            "soft_labels": mode,
            "requests": usage.get("requests", 0),
            "cached": usage.get("cached", 0),
            "retries": usage.get("retries", 0),
            "failed": usage.get("failed", 0),
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "texts_labeled": usage.get("texts", 0),
            "examples_per_s": round(sent / seconds, 2) if seconds > 0 and sent else None,
        }
        if mode == "logprobs":
            texts = usage.get("texts", 0)
            row["covered_mass"] = round(usage.get("covered_mass_sum", 0.0) / texts, 4) if texts else None
            row["uncovered_texts"] = usage.get("uncovered_texts", 0)
            how = "first-token log-probabilities of the verbalizers, renormalised over the classes"
            if row["covered_mass"] is not None:
                how += f" (mean covered probability mass {row['covered_mass']:.3f})"
        elif self.state.get("multi_label"):
            row["samples"] = self.config.samples
            row["unmatched_answers"] = usage.get("unmatched_answers", 0)
            row["unknown_labels"] = usage.get("unknown_labels", 0)
            how = (
                f"per-label smoothed votes of {self.config.samples} sampled answers per text, each asked for every "
                f"label that applies ({self.state.get('why', '')}); {row['unmatched_answers']} of "
                f"{usage.get('answers', 0)} answers named no label and not none, and {row['unknown_labels']} names "
                "that are no label were ignored"
            )
        else:
            row["samples"] = self.config.samples
            row["unmatched_answers"] = usage.get("unmatched_answers", 0)
            how = (
                f"smoothed votes of {self.config.samples} sampled answers per text ({self.state.get('why', '')}); "
                f"{row['unmatched_answers']} of {usage.get('answers', 0)} answers named no class"
            )
        speed = f"{row['examples_per_s']} texts/s" if row["examples_per_s"] else "no request sent (all cached)"
        row["notes"] = [
            f"teacher: {self.config.model} served at an OpenAI-compatible endpoint ({self.config.api} API); soft "
            f"labels from {how}; params and size do not apply: {row['requests']} requests, "
            f"{row['prompt_tokens']:,} prompt + {row['completion_tokens']:,} completion tokens, {speed} at "
            f"max_concurrency {self.config.max_concurrency}"
        ]
        return row


def _add(total: dict[str, Any], more: dict[str, Any]) -> None:

    add_stats(total, more)
