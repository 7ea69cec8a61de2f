"""Rule-based transfer set of Tang et al. 2019 (arXiv:1903.12136, section 3.3): masking, POS-guided word swaps and
n-gram sampling of the labeled training texts, for the teacher to label.

Recipe, per source text and per copy (``copies`` = the paper's n_iter): for every token draw X ~ U[0, 1];
X < p_mask masks it, p_mask <= X < p_mask + p_swap swaps it for another word of the same class (so the two never
both apply), else it is kept. Then, with probability p_ngram, the whole copy is replaced by a random contiguous
n-gram of itself, n ~ U{1..ngram_max} (capped at the length). Copies equal to any input text and duplicates are
dropped, so a source yields at most ``copies`` texts. Defaults are the paper's (0.1, 0.1, 0.25, 5, 20).

Tokens: a regex split into words (hyphenated words kept whole), Penn-style clitics (``do n't``, ``it 's``: what
the tagger's lexicon and SST-2 use) and single punctuation marks; every token, punctuation included, counts as a
"word" for masking and swapping. Outputs are the tokens rejoined with single spaces.

Swap partners are drawn from the words the input texts hold with the same class, proportional to their frequency
there (as the paper samples same-tag words of the corpus), never the original word itself; a word whose class has
no other word is kept (counted in ``swap_no_partner``).

Swap modes (``stats["swap_mode"]``):
- ``pos``: Penn Treebank tags from the Brill-style tagger that TextBlob ships inside its PyPI wheel (Pattern's
  lexicon of ~94k words, lexical rules for unknown words, contextual rules; tagged per text in context). Tried
  first, because it needs no download at run time. What else was checked (pip, PyPI-only network): NLTK's
  averaged perceptron needs ``nltk.download`` data that no PyPI wheel ships; spaCy installs but its models
  (en_core_web_sm) are not on PyPI; stanza and flair download models at run time (and are heavy);
  textblob-aptagger (a bundled perceptron pickle) is unmaintained since 2013.
- ``shape``: used when TextBlob is missing (``auto``). NOT part of speech: words are grouped by an orthographic
  proxy, namely punctuation / number / letters-and-digits, capitalization (lower, Title, UPPER) and a common
  English suffix (-ing, -ed, -ly, -tion, -s, ...) or, without one, short (<= 3 letters, mostly function words) vs
  long. It keeps inflection roughly consistent, not syntax.
- ``none``: no swaps; the swap band of X then keeps the word, so the masking rate is unchanged.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from gendistill.errors import ConfigError

if TYPE_CHECKING:
    from gendistill.sources.augment import AugmentSource

POS_NEEDS_TEXTBLOB = "pos needs TextBlob (pip install textblob); or use swap: shape / auto"
_TOKEN = re.compile(r"\w+(?=n['’]t\b)|n['’]t\b|['’](?:s|re|ve|ll|d|m)\b|\w+(?:-\w+)*|[^\w\s]", re.IGNORECASE)
_SUFFIXES = (
    "ing",
    "ed",
    "ly",
    "tion",
    "sion",
    "ness",
    "ment",
    "able",
    "ible",
    "ful",
    "less",
    "ous",
    "ive",
    "ity",
    "ism",
    "ist",
    "est",
    "er",
    "al",
    "ic",
    "es",
    "s",
)


def mask_token_problem(token: str) -> str | None:
    """Why `token` cannot stand for a masked word, or None. Outputs are tokens joined by single spaces, so a mask
    token with whitespace would turn into several words, and an empty one would vanish."""
    if not token or any(c.isspace() for c in token):
        return f"must be a non-empty string without whitespace, got {token!r}"
    return None


def tokenize(text: str) -> list[str]:
    """Words, Penn-style clitics and single punctuation marks; outputs rejoin them with single spaces."""
    return _TOKEN.findall(text)


@functools.lru_cache(maxsize=1)
def _pos_tagger() -> Any:
    """TextBlob's bundled Brill tagger as a function of a token list, or None when TextBlob is not installed."""
    try:  # TextBlob is an optional extra (`gendistill[augment]`): without it, swaps fall back to word shapes
        from textblob._text import find_tags
        from textblob.en import lexicon
    except ImportError:
        return None

    def tag(tokens: list[str]) -> list[str]:
        # textblob's own Parser.find_tags passes only the lexicon; Pattern's tagger also applies the lexical
        # (unknown-word) and contextual rules, which fix e.g. VBD/VBN and IN/WDT in context
        tagged = find_tags(
            tokens,
            lexicon=lexicon,
            morphology=lexicon.morphology,
            context=lexicon.context,
            default=("NN", "NNP", "CD"),
            language="en",
        )
        return [tag for _, tag in tagged]

    return tag


def pos_available() -> bool:
    """Whether ``swap: pos`` can run here (TextBlob installed)."""
    return _pos_tagger() is not None


def shape_class(token: str) -> str:
    """The ``shape`` proxy class of one token: orthography only, documented in the module docstring."""
    if not any(c.isalnum() for c in token):
        return "punct"
    if not any(c.isalpha() for c in token):
        return "num"
    if any(c.isdigit() for c in token):
        return "alnum"
    case = "upper" if token.isupper() and len(token) > 1 else "title" if token[0].isupper() else "lower"
    lower = token.lower()
    suffix = next((s for s in _SUFFIXES if lower.endswith(s) and len(lower) > len(s) + 2), None)
    return f"{case}:-{suffix}" if suffix else f"{case}:{'short' if len(lower) <= 3 else 'long'}"


def resolve_swap_mode(swap: str) -> str:
    """``auto`` becomes ``pos`` when the tagger is installed, else ``shape``; the other modes stay as they are."""
    if swap == "auto":
        return "pos" if pos_available() else "shape"
    return swap


def word_classes(token_lists: list[list[str]], mode: str) -> list[list[str]]:
    """The swap class of every token (POS tag in context, or shape class); mode is ``pos`` or ``shape``."""
    if mode == "pos":
        tag = _pos_tagger()
        if tag is None:  # the source's preflight check refuses this config before any training
            raise ConfigError(f"swap: {POS_NEEDS_TEXTBLOB}")
        return [tag(tokens) if tokens else [] for tokens in token_lists]
    if mode == "shape":
        return [[shape_class(t) for t in tokens] for tokens in token_lists]
    raise ValueError(f"no word classes for swap mode {mode!r}")


class _Vocab:
    """Same-class words with cumulative counts: frequency-proportional draws that exclude the original word."""

    def __init__(self, counts: Counter[str]) -> None:
        self.words = sorted(counts)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.counts = [counts[w] for w in self.words]
        self.ends = list(np.cumsum(self.counts).tolist())  # ends[i]: total count of words[0..i]
        self.total = self.ends[-1]

    def draw(self, word: str, u: float) -> str | None:
        i = self.index.get(word)
        own = self.counts[i] if i is not None else 0
        if own == self.total:
            return None
        r = int(u * (self.total - own))
        if i is not None and r >= self.ends[i] - own:  # skip the original word's segment
            r += own
        return self.words[bisect.bisect_right(self.ends, r)]


def augment_texts(texts: list[str], config: AugmentSource, seed: int) -> tuple[list[str], dict]:
    """Returns (new texts in a deterministic order, stats), with the rates and modes of an `augment` source's
    config (validated there: its fields, and its preflight check for the mask token and the tagger).

    Order: sources in input order, each source's kept copies in draw order. One numpy generator seeded with
    ``seed`` drives every draw, so the same inputs and seed give the same list. Stats count every candidate
    copy and why it was dropped, the token operations, and the resolved ``swap_mode``.
    """
    mode = resolve_swap_mode(config.swap)
    token_lists = [tokenize(t) for t in texts]
    classes = word_classes(token_lists, mode) if mode in ("pos", "shape") else None
    vocab: dict[str, _Vocab] = {}
    if classes is not None:
        by_class: dict[str, Counter[str]] = {}
        for tokens, tags in zip(token_lists, classes, strict=True):
            for token, tag in zip(tokens, tags, strict=True):
                by_class.setdefault(tag, Counter())[token] += 1
        vocab = {tag: _Vocab(counts) for tag, counts in by_class.items()}

    forbidden = {" ".join(t.split()) for t in texts} | {" ".join(tokens) for tokens in token_lists}
    seen: set[str] = set()
    out: list[str] = []
    stats = Counter()
    rng = np.random.default_rng(seed)
    p_mask, p_keep_from = config.p_mask, config.p_mask + config.p_swap
    for i, tokens in enumerate(token_lists):
        n = len(tokens)
        if n == 0:
            stats["empty_sources"] += 1
            continue
        stats["sources"] += 1
        stats["tokens"] += n * config.copies
        x = rng.random((config.copies, n))
        swap_u = rng.random((config.copies, n))
        ngram = rng.random(config.copies) < config.p_ngram
        ngram_n = rng.integers(1, config.ngram_max + 1, size=config.copies)
        ngram_u = rng.random(config.copies)
        mask = x < p_mask
        swap = (x >= p_mask) & (x < p_keep_from)
        stats["masked"] += int(mask.sum())
        tags = classes[i] if classes is not None else None
        for c in range(config.copies):
            new = list(tokens)
            for j in np.flatnonzero(mask[c]).tolist():
                new[j] = config.mask_token
            swaps = np.flatnonzero(swap[c])
            if tags is None:
                stats["swap_skipped"] += len(swaps)
            else:
                for j, u in zip(swaps.tolist(), swap_u[c, swaps].tolist(), strict=True):
                    partner = vocab[tags[j]].draw(tokens[j], u)
                    if partner is None:
                        stats["swap_no_partner"] += 1
                    else:
                        new[j] = partner
                        stats["swapped"] += 1
            if ngram[c]:
                k = min(int(ngram_n[c]), n)
                start = int(ngram_u[c] * (n - k + 1))
                new = new[start : start + k]
                stats["ngram"] += 1
            text = " ".join(new)
            stats["candidates"] += 1
            if text in forbidden:
                stats["dropped_identical"] += 1
            elif text in seen:
                stats["dropped_duplicate"] += 1
            else:
                seen.add(text)
                out.append(text)
    keys = (
        "sources",
        "empty_sources",
        "candidates",
        "dropped_identical",
        "dropped_duplicate",
        "tokens",
        "masked",
        "swapped",
        "swap_no_partner",
        "swap_skipped",
        "ngram",
    )
    return out, {
        "swap_mode": mode,
        "swap_classes": len(vocab),
        "copies": config.copies,
        **{k: int(stats[k]) for k in keys},
        "kept": len(out),
    }
