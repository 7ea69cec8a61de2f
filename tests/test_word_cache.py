"""The predictor's word cache gives exactly the tokenizer's ids: on adversarial texts that must take the library
path (accents, CJK, control characters, added tokens) and on random printable ASCII that takes the fast path."""

from __future__ import annotations

import random
import string

import pytest
from conftest import all_fixture_texts
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer, Tokenizer

from gendistill.artifacts.word_cache import CachedWordTokenizer
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


def test_cache_is_bounded(tokenizers, monkeypatch):
    import gendistill.artifacts.word_cache as word_cache

    monkeypatch.setattr(word_cache, "MAX_CACHED_WORDS", 10)
    cached = CachedWordTokenizer(tokenizers["word_level"])
    texts = random_ascii(random.Random(1), 50)
    expected = [e.ids for e in tokenizers["word_level"].encode_batch(texts, add_special_tokens=False)]
    assert cached.token_ids(texts) == expected
    assert len(cached.words) <= 10
