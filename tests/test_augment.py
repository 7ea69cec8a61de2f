import random
import re
from collections import Counter

import pytest

from gendistill.config import build_config
from gendistill.errors import ConfigError
from gendistill.generation import rule_based as augment
from gendistill.generation.rule_based import augment_texts, shape_class, tokenize, word_classes
from gendistill.sources.augment import AugmentSource

TEXTS = [
    "The team won the match after a late goal .",
    "Heavy rain and strong wind are expected tomorrow morning",
    "She quickly baked fresh bread, then served it with garlic sauce!",
    "I didn't like the ending.",
    "Prices rose 3 percent in 2004 as oil hit record highs",
    "The coach said that the tired players were slow in the rain",
]


def lengths_distinct(texts):
    return len({len(tokenize(t)) for t in texts}) == len(texts)


def by_length(texts):
    """Source tokens by token count: with p_ngram=0 an output has its source's length."""
    assert lengths_distinct(texts)
    return {len(tokenize(t)): tokenize(t) for t in texts}


def random_corpus(n_texts=20, first_len=30, seed=0):
    """Lowercase letter-only words of one shape class ("lower:long"), texts of distinct lengths."""
    rng = random.Random(seed)
    pool = sorted({"".join(rng.choices("abefhikmopuvwz", k=5)) + rng.choice("aoukpb") for _ in range(200)})
    return [" ".join(rng.choices(pool, k=first_len + i)) for i in range(n_texts)]


def test_tokenize_keeps_punctuation_and_splits_clitics():
    assert tokenize("I didn't like it's ending, well-known!") == [
        "I",
        "did",
        "n't",
        "like",
        "it",
        "'s",
        "ending",
        ",",
        "well-known",
        "!",
    ]
    assert tokenize("disney 's film ca n't") == ["disney", "'s", "film", "ca", "n't"]


def test_mask_one_masks_every_word():
    cfg = AugmentSource(p_mask=1.0, p_swap=0.0, p_ngram=0.0, copies=3, mask_token="<mask>", swap="shape")
    out, stats = augment_texts(TEXTS, cfg, seed=0)
    assert len(out) == len(TEXTS)  # every copy of a source is the same all-mask text: one survives per length
    assert {len(o.split(" ")) for o in out} == {len(tokenize(t)) for t in TEXTS}
    assert all(tok == "<mask>" for o in out for tok in o.split(" "))
    assert stats["masked"] == stats["tokens"] and stats["dropped_duplicate"] == len(TEXTS) * 2


@pytest.mark.parametrize("mode", ["shape", "pos"])
def test_swap_one_keeps_the_class_of_every_word(mode):
    if mode == "pos":
        pytest.importorskip("textblob")
    cfg = AugmentSource(p_mask=0.0, p_swap=1.0, p_ngram=0.0, copies=5, swap=mode)
    out, stats = augment_texts(TEXTS, cfg, seed=1)
    assert out and stats["swap_mode"] == mode and stats["masked"] == 0
    sources = by_length(TEXTS)
    tokens = [tokenize(t) for t in TEXTS]
    words_of_class: dict[str, set[str]] = {}
    for toks, classes in zip(tokens, word_classes(tokens, mode), strict=True):
        for tok, cls in zip(toks, classes, strict=True):
            words_of_class.setdefault(cls, set()).add(tok)
    source_classes = {len(toks): classes for toks, classes in zip(tokens, word_classes(tokens, mode), strict=True)}
    changed = 0
    for o in out:
        new = o.split(" ")
        src, classes = sources[len(new)], source_classes[len(new)]
        for old, rep, cls in zip(src, new, classes, strict=True):
            assert rep in words_of_class[cls]
            if mode == "shape":
                assert shape_class(rep) == shape_class(old)
            if rep == old:
                assert words_of_class[cls] == {old}  # kept only when the class has no other word
            changed += rep != old
    assert changed > 0
    assert stats["swapped"] + stats["swap_no_partner"] == stats["tokens"]


def test_ngram_one_gives_contiguous_ngrams_of_the_source():
    cfg = AugmentSource(p_mask=0.0, p_swap=0.0, p_ngram=1.0, ngram_max=3, copies=20, swap="shape")
    for text in TEXTS:
        src = tokenize(text)
        out, stats = augment_texts([text], cfg, seed=2)
        assert out and stats["ngram"] == 20
        for o in out:
            gram = o.split(" ")
            assert 1 <= len(gram) <= 3
            assert any(src[i : i + len(gram)] == gram for i in range(len(src) - len(gram) + 1))


def test_all_zero_probabilities_produce_nothing():
    cfg = AugmentSource(p_mask=0.0, p_swap=0.0, p_ngram=0.0, copies=4)
    out, stats = augment_texts(TEXTS + ["", "  "], cfg, seed=0)
    assert out == []
    assert stats["candidates"] == stats["dropped_identical"] == 4 * len(TEXTS) and stats["empty_sources"] == 2


def test_same_seed_same_output_other_seed_other_output():
    cfg = AugmentSource(swap="shape", copies=5)
    first = augment_texts(TEXTS, cfg, seed=7)
    assert augment_texts(TEXTS, cfg, seed=7) == first
    assert augment_texts(TEXTS, cfg, seed=8)[0] != first[0]


def test_mixture_probabilities_hold_and_mask_swap_are_exclusive():
    texts = random_corpus()
    cfg = AugmentSource(p_mask=0.3, p_swap=0.2, p_ngram=0.0, copies=50, swap="shape")
    out, stats = augment_texts(texts, cfg, seed=3)
    assert stats["kept"] == stats["candidates"] == 50 * len(texts)  # long random texts: no collisions
    sources = by_length(texts)
    ops = Counter()
    for o in out:
        for old, new in zip(sources[len(o.split(" "))], o.split(" "), strict=True):
            ops["mask" if new == "[MASK]" else "keep" if new == old else "swap"] += 1
    total = sum(ops.values())
    assert total == stats["tokens"] and ops["mask"] == stats["masked"] and ops["swap"] == stats["swapped"]
    assert abs(ops["mask"] / total - 0.3) < 0.02 and abs(ops["swap"] / total - 0.2) < 0.02
    # the same draws decide masking whatever the swap mode: the swap band never turns into a mask
    none_out, none_stats = augment_texts(
        texts, AugmentSource(p_mask=0.3, p_swap=0.2, p_ngram=0.0, copies=50, swap="none"), seed=3
    )
    assert none_stats["masked"] == stats["masked"] and none_stats["swap_skipped"] == stats["swapped"]
    for o, n in zip(out, none_out, strict=True):
        assert [t == "[MASK]" for t in o.split(" ")] == [t == "[MASK]" for t in n.split(" ")]
    # p_mask + p_swap = 1: every word is either masked or swapped, never both, never kept
    both, both_stats = augment_texts(
        texts, AugmentSource(p_mask=0.5, p_swap=0.5, p_ngram=0.0, copies=5, swap="shape"), seed=4
    )
    assert both_stats["masked"] + both_stats["swapped"] == both_stats["tokens"]
    for o in both:
        for old, new in zip(sources[len(o.split(" "))], o.split(" "), strict=True):
            assert new != old


def test_caps_duplicates_and_input_copies():
    texts = ["a b", "a c", "b c d", "the cat sat down", "the dog sat down now", "x"]
    cfg = AugmentSource(p_mask=0.3, p_swap=0.4, p_ngram=0.3, copies=6, swap="shape")
    out, stats = augment_texts(texts, cfg, seed=5)
    assert len(out) == len(set(out)) == stats["kept"] <= 6 * len(texts)
    assert not set(out) & set(texts)
    assert stats["candidates"] == stats["kept"] + stats["dropped_identical"] + stats["dropped_duplicate"]
    assert stats["dropped_identical"] > 0 and stats["dropped_duplicate"] > 0
    for text in texts:
        single, _ = augment_texts([text], AugmentSource(p_mask=0.5, copies=6, swap="none"), seed=5)
        assert len(single) <= 6 and text not in single


def test_auto_mode_and_missing_tagger(monkeypatch):
    _, stats = augment_texts(TEXTS, AugmentSource(copies=1), seed=0)
    assert stats["swap_mode"] == ("pos" if augment.pos_available() else "shape")
    monkeypatch.setattr(augment, "_pos_tagger", lambda: None)
    assert augment_texts(TEXTS, AugmentSource(copies=1), seed=0)[1]["swap_mode"] == "shape"
    with pytest.raises(ConfigError, match="swap: pos needs TextBlob"):
        augment_texts(TEXTS, AugmentSource(swap="pos"), seed=0)


def run_config(*sources: dict):
    return build_config({"data": {"train": "t.jsonl"}, "teacher": {"model": "m"}, "transfer": {"sources": sources}})


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        (dict(p_mask=0.7, p_swap=0.4), "'transfer.sources.1': p_mask + p_swap must be at most 1"),
        (dict(p_ngram=1.5), "'transfer.sources.1.p_ngram'"),
        (dict(swap="lemma"), "'transfer.sources.1.swap'"),
        (dict(ngram_max=0), "'transfer.sources.1.ngram_max'"),
        (dict(copies=0), "'transfer.sources.1.copies'"),
    ],
)
def test_bad_values_are_refused_with_the_key_that_holds_them(bad, key):
    with pytest.raises(ConfigError, match=re.escape(f"bad value for {key}")):
        run_config({"type": "file", "path": "pool.jsonl"}, {"type": "augment", **bad})


@pytest.mark.parametrize("token", ["", "a b", "[MASK]\n"])
def test_preflight_refuses_a_mask_token_that_the_outputs_cannot_hold(token):
    pool = {"type": "file", "path": "pool.jsonl"}
    config = run_config(pool, pool, {"type": "augment", "mask_token": token})
    with pytest.raises(ConfigError, match=r"^transfer\.sources\[2\]\.mask_token must be a non-empty string without"):
        config.transfer.sources[2].check(config, 2)


def test_preflight_refuses_swap_pos_without_textblob(monkeypatch):
    config = run_config({"type": "augment", "swap": "pos"})
    if augment.pos_available():  # TextBlob installed: pos is fine
        config.transfer.sources[0].check(config, 0)
    monkeypatch.setattr(augment, "_pos_tagger", lambda: None)
    with pytest.raises(
        ConfigError, match=r"^transfer\.sources\[0\]\.swap: pos needs TextBlob \(pip install textblob\)"
    ):
        config.transfer.sources[0].check(config, 0)
    AugmentSource(swap="auto").check(config, 0)  # auto falls back to word shapes


def test_swap_partners_follow_corpus_frequency_without_the_original():
    vocab = augment._Vocab(Counter({"a": 1, "b": 2, "c": 7}))
    grid = [(k + 0.5) / 900 for k in range(900)]
    assert Counter(vocab.draw("c", u) for u in grid) == Counter({"a": 300, "b": 600})
    assert Counter(vocab.draw("a", u) for u in grid) == Counter({"b": 200, "c": 700})
    assert Counter(vocab.draw("zzz", u) for u in grid) == Counter({"a": 90, "b": 180, "c": 630})
    assert augment._Vocab(Counter({"only": 3})).draw("only", 0.5) is None
