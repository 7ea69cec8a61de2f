"""A per-word id cache in front of a BERT-style `tokenizers.Tokenizer`, for the predictor's hot path.

Through the library, a BERT-style tokenizer (BertNormalizer + BertPreTokenizer + a per-word model such as WordPiece
or WordLevel) took ~58 us per ag_news text on one thread, against ~9 us with this cache (warm): tokenization, not the
network, was what limited the bag student's throughput.
The pre-tokenizer splits on whitespace first (then on punctuation inside each piece) and the normalizer works
character by character, so tokenizing each space-separated piece on its own gives the same ids as tokenizing the
text. That holds when the only whitespace is " ", i.e. for printable ASCII text; such texts are split with
`str.split` and each piece's ids come from a dict filled by the real tokenizer. Every other text (non-ASCII,
tabs and control characters, an added token such as "[MASK]" in it) goes through the tokenizer unchanged, so
the ids are identical either way (tests compare both on adversarial texts). Torch-free: imported by
`gendistill.artifacts.inference`.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from collections.abc import Sequence

from tokenizers import Tokenizer

PER_WORD_MODELS = ("WordPiece", "WordLevel")
# The cache's default memory bound. A word is a whitespace piece, which an adversarial text can make ~10 kB long
# with thousands of ids, so a bound in words bounds nothing; 64 MiB holds ~300k ordinary words (~200 bytes each).
DEFAULT_CACHE_BYTES = 64 << 20
# What one dict slot costs besides its key and value (hash, key and value pointers, spare capacity), rounded up.
ENTRY_OVERHEAD_BYTES = 100
# An int beyond CPython's small-int cache (-5..256) is its own 28-byte object; most token ids are.
INT_BYTES = 28


def entry_bytes(word: str, ids: tuple[int, ...]) -> int:
    """What caching `word -> ids` holds in memory: the key, the tuple, its int objects and the dict slot."""
    return sys.getsizeof(word) + sys.getsizeof(ids) + INT_BYTES * len(ids) + ENTRY_OVERHEAD_BYTES


class _WordIds(dict):
    """word -> ids (at most `max_ids` of them); a miss asks the tokenizer (a single word goes through the same
    normalizer and model). When the entries' bytes would pass `max_bytes`, the cache is emptied and refilled:
    simple, and an adversary cannot make it hold more. The predictor's threads share one cache: a miss updates the
    entries and their byte count under a lock (a hit is a plain dict lookup)."""

    def __init__(self, tokenizer: Tokenizer, max_ids: int | None, max_bytes: int):
        super().__init__()
        self.tokenizer, self.max_ids, self.max_bytes = tokenizer, max_ids, max_bytes
        self.bytes = 0
        self._lock = threading.Lock()

    def __missing__(self, word: str) -> tuple[int, ...]:
        ids = tuple(self.tokenizer.encode(word, add_special_tokens=False).ids[: self.max_ids])
        size = entry_bytes(word, ids)
        if size > self.max_bytes:
            return ids  # larger than the whole cache: used once, not kept
        with self._lock:
            if word in self:  # another thread cached it meanwhile
                return ids
            if self.bytes + size > self.max_bytes:
                self.clear()
            self[word] = ids
            self.bytes += size
        return ids

    def clear(self) -> None:
        super().clear()
        self.bytes = 0


class CachedWordTokenizer:
    """`token_ids(texts)` == the tokenizer's ids without special tokens, cut to `max_length` (None: all of them),
    faster for BERT-style tokenizers.

    `enabled` is False (and every text takes the library path) unless the tokenizer's pipeline is one whose
    behaviour on printable ASCII is known exactly. The word cache keeps at most `max_length` ids per word (a text
    never uses more) and holds at most `max_bytes` (entry_bytes per word).
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int | None = None, max_bytes: int = DEFAULT_CACHE_BYTES):
        if (max_length is not None and max_length < 1) or max_bytes < 0:
            raise ValueError(f"max_length must be >= 1 and max_bytes >= 0, got {max_length=}, {max_bytes=}")
        self.tokenizer, self.max_length = tokenizer, max_length
        spec = json.loads(tokenizer.to_str())
        normalizer, pre_tokenizer = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}
        self.enabled = (
            normalizer.get("type") == "BertNormalizer"
            and pre_tokenizer.get("type") == "BertPreTokenizer"
            and (spec.get("model") or {}).get("type") in PER_WORD_MODELS
            and spec.get("truncation") is None
            and spec.get("padding") is None
        )
        # added tokens are matched in the raw text (or the normalized one); a text holding one, in any letter case
        # when the normalizer lowercases, takes the library path
        self.lowercase = bool(normalizer.get("lowercase"))
        contents = [token["content"] for token in spec.get("added_tokens") or []]
        self.added = [content.lower() for content in contents] if self.lowercase else contents
        self.words = _WordIds(tokenizer, max_length, max_bytes)

    def _is_plain(self, text: str) -> bool:
        if not (text.isascii() and text.isprintable()):
            return False
        folded = text.lower() if self.lowercase else text
        return not any(token in folded for token in self.added)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        if not self.enabled:
            return self._library_ids(texts)
        out: list[list[int] | None] = [None] * len(texts)
        slow: list[int] = []
        lookup, chain, islice = self.words.__getitem__, itertools.chain.from_iterable, itertools.islice
        for index, text in enumerate(texts):
            if self._is_plain(text):
                # lazily: the words past max_length ids are neither tokenized nor cached
                out[index] = list(islice(chain(map(lookup, text.split())), self.max_length))
            else:
                slow.append(index)
        for index, ids in zip(slow, self._library_ids([texts[i] for i in slow]), strict=True):
            out[index] = ids
        return out  # type: ignore[return-value]

    def _library_ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)  # no offsets: faster
        return [encoding.ids[: self.max_length] for encoding in encode(texts, add_special_tokens=False)]
