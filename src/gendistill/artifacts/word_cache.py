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
from collections.abc import Sequence

from tokenizers import Tokenizer

PER_WORD_MODELS = ("WordPiece", "WordLevel")
MAX_CACHED_WORDS = 1 << 18  # bounds memory under adversarial input; the cache is simply refilled


class _WordIds(dict):
    """word -> ids; a miss asks the tokenizer (a single word goes through the same normalizer and model)."""

    def __init__(self, tokenizer: Tokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    def __missing__(self, word: str) -> list[int]:
        if len(self) >= MAX_CACHED_WORDS:
            self.clear()
        ids = self[word] = self.tokenizer.encode(word, add_special_tokens=False).ids
        return ids


class CachedWordTokenizer:
    """`token_ids(texts)` == the tokenizer's ids without special tokens, faster for BERT-style tokenizers.

    `enabled` is False (and every text takes the library path) unless the tokenizer's pipeline is one whose
    behaviour on printable ASCII is known exactly.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
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
        self.words = _WordIds(tokenizer)

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
        lookup, chain = self.words.__getitem__, itertools.chain.from_iterable
        for index, text in enumerate(texts):
            if self._is_plain(text):
                out[index] = list(chain(map(lookup, text.split())))
            else:
                slow.append(index)
        for index, ids in zip(slow, self._library_ids([texts[i] for i in slow]), strict=True):
            out[index] = ids
        return out  # type: ignore[return-value]

    def _library_ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)  # no offsets: faster
        return [encoding.ids for encoding in encode(texts, add_special_tokens=False)]
