"""Reading what a served LLM answered: texts out of a generated list, a class (or, in a multi-label task, a set of
labels) out of an annotation, and soft labels out of first-token log-probabilities or sampled answers. Pure
functions, each pinned by a test."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# a list item: "1. x", "1) x", "(1) x", "#1 x", "- x", "* x", "• x", "Text 1: x"; the marker needs a space after it,
# so "3.5 million" or "-5 degrees" are texts, not items
_ITEM = re.compile(
    r"^\s*(?:\*\*)?(?:\(?\d{1,3}[.):\]]|#\d{1,3}[.:)]?|[-*•·‣▪–—]|(?:text|example|sample)\s*#?\d{1,3}\s*[:.)-])(?:\*\*)?"
    r"\s+(?P<body>.*)$",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(r"^(?:sure|certainly|of course|okay|ok|here (?:are|is)|below (?:are|is))\b", re.IGNORECASE)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "„": "“", "`": "`"}


@dataclass
class ParsedList:
    """The texts found in one answer and every line that was not one, by reason."""

    texts: list[str] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)


def _unquote(text: str) -> str:
    text = text.strip()
    if text.startswith("**") and text.endswith("**") and len(text) > 4:
        text = text[2:-2].strip()
    while len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text


def parse_list(answer: str, prefix: str = "") -> ParsedList:
    """Texts out of a generated list: numbered or bulleted items, each unquoted. When the answer has items, lines
    before the first are a preamble ("Here are 5 texts:") and other lines are unparsable; without items, each line
    is a text, except a first line that reads as a preamble. `prefix` is the end of a completion prompt that the
    answer continues (e.g. "4."), so that its first line is read as the item it is. Blank lines count as nothing;
    a `<think>` block (reasoning models) is skipped."""
    result = ParsedList()
    lines = [line for line in (prefix + _THINK.sub("", answer)).splitlines() if line.strip()]
    matches = [_ITEM.match(line) for line in lines]
    if any(matches):
        first = next(i for i, m in enumerate(matches) if m)
        for index, match in enumerate(matches):
            if match is None:
                result.dropped["preamble" if index < first else "unparsable"] += 1
                continue
            text = _unquote(match.group("body"))
            if text:
                result.texts.append(text)
            else:
                result.dropped["empty_item"] += 1
        return result
    for index, line in enumerate(lines):
        stripped = line.strip()
        if index == 0 and len(lines) > 1 and (stripped.endswith(":") or _PREAMBLE.match(stripped)):
            result.dropped["preamble"] += 1
            continue
        text = _unquote(stripped)
        if text:
            result.texts.append(text)
        else:
            result.dropped["empty_item"] += 1
    return result


def choice_text(choice: dict[str, Any]) -> str:
    """The generated text of one choice of either API ("" for a None content, e.g. a refusal or a tool call)."""
    message = choice.get("message")
    if isinstance(message, dict):
        content = message.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def normalize_word(text: str) -> str:
    """A token or an answer as compared with verbalizers: tokenizer space markers (Ġ, ▁) and surrounding spaces,
    quotes and punctuation removed, case folded."""
    text = unicodedata.normalize("NFKC", text.replace("Ġ", " ").replace("▁", " ")).strip().casefold()
    return text.strip(" \t\n\"'`“”‘’«».,;:!?*()[]")


def match_token(token: str, verbalizers: list[str]) -> int | None:
    """The label whose verbalizer starts with this (first) token, when exactly one does; None otherwise (a token
    two verbalizers start with, such as "s" for "sports" and "science", tells them apart no better than nothing)."""
    word = normalize_word(token)
    if not word:
        return None
    candidates = [index for index, verbalizer in enumerate(verbalizers) if normalize_word(verbalizer).startswith(word)]
    return candidates[0] if len(candidates) == 1 else None


def match_answer(answer: str, verbalizers: list[str]) -> int | None:
    """The label a sampled answer names: the whole answer or its first line equal to a verbalizer, else the one
    verbalizer that occurs in its first line as a word. None when no label or several fit."""
    answer = _THINK.sub("", answer)
    targets = [normalize_word(v) for v in verbalizers]
    first_line = next((line for line in answer.splitlines() if line.strip()), "")
    for candidate in (answer, first_line):
        word = normalize_word(candidate)
        if word in targets:
            return targets.index(word)
    text = f" {normalize_word(first_line)} "
    found = [i for i, target in enumerate(targets) if re.search(rf"(?<!\w){re.escape(target)}(?!\w)", text)]
    return found[0] if len(found) == 1 else None


NONE_ANSWERS = frozenset({"none", "no label", "no labels", "none of them", "none of the above", "nothing"})
_SEPARATORS = re.compile(r"[,;|\n]")
_CONJUNCTION = re.compile(r"\s+(?:and|&)\s+")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")


@dataclass
class LabelSetAnswer:
    """What one multi-label annotation names: `labels` (sorted label ids; [] for an explicit "none"), or None when
    the answer names neither a label nor "none" (not a vote, as an unmatched single-label answer); `unknown`, the
    pieces that name no label (ignored and counted)."""

    labels: list[int] | None
    unknown: list[str] = field(default_factory=list)


def parse_label_set(answer: str, verbalizers: list[str]) -> LabelSetAnswer:
    """The labels a multi-label annotation names: the answer (a `<think>` block skipped) split on commas,
    semicolons, bars and line breaks, each piece compared with the verbalizers as `match_answer` compares a whole
    answer (case, surrounding spaces, quotes, punctuation and list bullets ignored; inner spaces collapsed); a piece
    that is no verbalizer is split once more on "and" / "&" ("sports and weather"). Repeats count once. "none"
    (or "no label", ...) is the empty set when it is all the answer names; beside labels it is ignored (the labels
    say more than the contradiction)."""
    targets = [_collapse(normalize_word(v)) for v in verbalizers]
    found: set[int] = set()
    unknown: list[str] = []
    said_none = False
    for piece in _SEPARATORS.split(_THINK.sub("", answer)):
        word = _collapse(normalize_word(_BULLET.sub("", piece)))
        if not word:
            continue
        parts = [word] if word in targets or word in NONE_ANSWERS else _CONJUNCTION.split(word)
        for part in parts:
            part = _collapse(normalize_word(part))
            if part in targets:
                found.add(targets.index(part))
            elif part in NONE_ANSWERS:
                said_none = True
            elif part:
                unknown.append(part)
    if found or said_none:
        return LabelSetAnswer(sorted(found), unknown)
    return LabelSetAnswer(None, unknown)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def first_token_logprobs(choice: dict[str, Any]) -> list[tuple[str, float]]:
    """(token, log-probability) of the candidates for the answer's first token, from either API's format:
    chat (`logprobs.content[0].top_logprobs`: [{token, logprob}]) or legacy completions (`logprobs.top_logprobs[0]`:
    {token: logprob}); a server that lists only the chosen token gives that one. [] when there are none."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return []
    content = logprobs.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        top = first.get("top_logprobs")
        pairs = [
            (item.get("token"), item.get("logprob"))
            for item in (top if isinstance(top, list) else [])
            if isinstance(item, dict)
        ]
        if not pairs and "token" in first:
            pairs = [(first.get("token"), first.get("logprob"))]
        return _clean(pairs)
    top = logprobs.get("top_logprobs")
    if isinstance(top, list) and top:
        first = top[0]
        if isinstance(first, dict):
            if "token" in first and "logprob" in first:  # a list of {token, logprob} entries
                return _clean([(item.get("token"), item.get("logprob")) for item in top if isinstance(item, dict)])
            return _clean(list(first.items()))
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if isinstance(tokens, list) and isinstance(values, list) and tokens and values:
        return _clean([(tokens[0], values[0])])
    return []


def _clean(pairs: list[tuple[Any, Any]]) -> list[tuple[str, float]]:
    return [
        (token, float(value))
        for token, value in pairs
        if isinstance(token, str)
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    ]


def logprob_soft_label(top: list[tuple[str, float]], verbalizers: list[str]) -> tuple[np.ndarray, float]:
    """(probabilities over the labels, covered mass). Each candidate token adds exp(logprob) to the label whose
    verbalizer it starts (`match_token`); the covered mass is their sum (how much of the model's first-token
    probability the labels account for); the probabilities are the labels' shares of it, uniform when it is 0."""
    mass = np.zeros(len(verbalizers), dtype=np.float64)
    for token, logprob in top:
        label = match_token(token, verbalizers)
        if label is not None:
            mass[label] += math.exp(logprob)
    covered = float(mass.sum())
    if covered <= 0:
        return np.full(len(verbalizers), 1 / len(verbalizers)), 0.0
    return mass / covered, covered


def vote_soft_label(votes: list[int | None], num_labels: int, smoothing: float) -> np.ndarray:
    """Smoothed vote frequencies: (count of label + smoothing) / (valid votes + labels x smoothing); answers that
    name no label are not votes. Uniform when there is no valid vote and no smoothing."""
    counts = np.bincount([v for v in votes if v is not None], minlength=num_labels).astype(np.float64)
    total = counts.sum() + num_labels * smoothing
    if total <= 0:
        return np.full(num_labels, 1 / num_labels)
    return (counts + smoothing) / total


def label_vote_probabilities(votes: list[list[int] | None], num_labels: int, smoothing: float) -> np.ndarray:
    """Per-label probabilities of a multi-label annotation from sampled answers: for each label, (answers naming it
    + smoothing) / (valid answers + 2 x smoothing), each label a yes/no vote of its own (the single-label
    smoothing, with two outcomes per label), so no probability is exactly 0 or 1 while smoothing > 0. Answers that
    name nothing (None) are not votes; with no valid vote and no smoothing, 0.5."""
    valid = [vote for vote in votes if vote is not None]
    counts = np.zeros(num_labels, dtype=np.float64)
    for vote in valid:
        counts[list(set(vote))] += 1
    total = len(valid) + 2 * smoothing
    if total <= 0:
        return np.full(num_labels, 0.5)
    return (counts + smoothing) / total


def probability_logits(probabilities: np.ndarray, floor: float) -> np.ndarray:
    """What the pipeline stores as a multi-label teacher's logits: log(p / (1 - p)) with p kept in
    [floor, 1 - floor], so the sigmoid the pipeline applies gives back p and every logit is finite."""
    p = np.clip(probabilities, floor, 1 - floor)
    return np.log(p / (1 - p)).astype(np.float32)


def soft_label_logits(probabilities: np.ndarray, floor: float) -> np.ndarray:
    """What the pipeline stores as teacher logits: log(max(p, floor)), so softmax gives back p (up to the floor)
    and a label the LLM never named costs a finite log(floor)."""
    return np.log(np.maximum(probabilities, floor)).astype(np.float32)
