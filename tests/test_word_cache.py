"""The predictor's word cache gives exactly the tokenizer's ids: on adversarial texts that must take the library
path (accents, CJK, control characters, added tokens) and on random printable ASCII that takes the fast path."""

from __future__ import annotations

import random
import string
import tracemalloc

import pytest
from conftest import all_fixture_texts
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer, Tokenizer

from gendistill.artifacts.word_cache import CachedWordTokenizer, entry_bytes
from gendistill.students.vocab import train_word_tokenizer

ADVERSARIAL = [
    "",
    " ",
    "rain storm",
    "Rain, STORM!! and the oven's heat: 42.5% (really)?",
    "e-mail me@example.com -- $5.00 C++ a_b ~tilde~ `tick` {brace} [bracket] |pipe| \\slash^",
    "tabs\tand\nnewlines\r\nhere",
    "control\x01char and \x7f delete",
    "the [MASK] token and [mask] and [Unk] [UNK] [CLS][SEP]",
    "Café naïve façade Ünïcödé",
    "中文字 mixed with english",
    "emoji 🙂 here",
    "x" * 150 + " word",
    "   leading and trailing   ",
    "digits123 and 4567 words2words",
]


def random_ascii(rng: random.Random, count: int) -> list[str]:
    alphabet = string.ascii_letters + string.digits + string.punctuation + "     "
    words = [w for text in all_fixture_texts()[:20] for w in text.split()]
    out = []
    for _ in range(count):
        pieces = [rng.choice(words) if rng.random() < 0.6 else "".join(rng.choices(alphabet, k=rng.randint(1, 9)))]
        pieces += [rng.choice(words) for _ in range(rng.randint(0, 12))]
        out.append(" ".join(pieces) if rng.random() < 0.5 else "".join(pieces))
    return out


@pytest.fixture(scope="module")
def tokenizers(tiny_teacher_dir) -> dict[str, Tokenizer]:
    texts = all_fixture_texts()
    cased = BertWordPieceTokenizer(lowercase=False)
    cased.train_from_iterator(texts, vocab_size=150)
    byte_level = ByteLevelBPETokenizer()
    byte_level.train_from_iterator(texts, vocab_size=300)
    return {
        "wordpiece": Tokenizer.from_file(str(tiny_teacher_dir / "tokenizer.json")),
        "wordpiece_cased": cased._tokenizer,
        "word_level": train_word_tokenizer(texts, vocab_size=60),
        "byte_level_bpe": byte_level._tokenizer,
    }


@pytest.mark.parametrize("name", ["wordpiece", "wordpiece_cased", "word_level", "byte_level_bpe"])
def test_cached_ids_equal_the_tokenizers(name, tokenizers):
    tokenizer = tokenizers[name]
    cached = CachedWordTokenizer(tokenizer)
    assert cached.enabled == (name != "byte_level_bpe")
    texts = ADVERSARIAL + random_ascii(random.Random(0), 400)
    expected = [encoding.ids for encoding in tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert cached.token_ids(texts) == expected  # cold cache
    assert cached.token_ids(texts[::-1]) == expected[::-1]  # warm cache, other batch composition
    assert [cached.token_ids([text])[0] for text in texts[:50]] == expected[:50]


def test_fast_path_is_taken_for_plain_ascii_only(tokenizers):
    cached = CachedWordTokenizer(tokenizers["wordpiece"])
    assert cached._is_plain("Rain, STORM!! (really)?")
    for text in ("tabs\there", "control\x01", "the [MASK] token", "the [Mask]", "Café", "中文"):
        assert not cached._is_plain(text), text


def test_cache_is_bounded_in_bytes(tokenizers):
    """The cache's byte count is the sum of its entries' sizes and never passes its bound; the ids stay exact."""
    budget = 20_000
    cached = CachedWordTokenizer(tokenizers["word_level"], max_bytes=budget)
    texts = random_ascii(random.Random(1), 200)
    expected = [e.ids for e in tokenizers["word_level"].encode_batch(texts, add_special_tokens=False)]
    peak = 0
    for text, ids in zip(texts, expected, strict=True):
        assert cached.token_ids([text]) == [ids]
        assert cached.words.bytes == sum(entry_bytes(word, value) for word, value in cached.words.items())
        peak = max(peak, cached.words.bytes)
    assert 0 < peak <= budget


def test_long_words_keep_at_most_max_length_ids(tokenizers):
    """A whitespace piece of 10 kB with thousands of ids is cached with max_length ids at most (a text never uses
    more), and the words after the first max_length ids of a text are not looked up at all."""
    tokenizer = tokenizers["wordpiece"]
    word = "rain." * 2000  # one whitespace piece, ~4000 ids
    assert len(tokenizer.encode(word, add_special_tokens=False).ids) > 1000
    cached = CachedWordTokenizer(tokenizer, max_length=32)
    texts = [word, f"storm {word} never-looked-up", "a b c " * 20]
    expected = [e.ids[:32] for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert cached.token_ids(texts) == expected
    assert max(len(ids) for ids in cached.words.values()) <= 32
    assert "never-looked-up" not in cached.words


def test_a_flood_of_long_one_word_texts_stays_within_the_cache_bytes(tokenizers):
    """The defect: 256 one-word texts of ~10 kB per request grew the server by ~100 MB per request, for good.
    Memory the cache holds (traced) stays under its byte bound however many such requests arrive."""
    budget = 1 << 20
    cached = CachedWordTokenizer(tokenizers["wordpiece"], max_length=64, max_bytes=budget)
    rng = random.Random(2)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2):
            batch = ["".join(rng.choices("ab.,", k=10_000)) for _ in range(128)]
            cached.token_ids(batch)
            del batch
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cached.words.bytes <= budget
    assert held < 1.5 * budget, held
