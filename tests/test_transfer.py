from collections import Counter

from gendistill.config import FilterConfig, TransferSource
from gendistill.transfer import TextFilter, build_generated_source, list_shards, read_shard


def test_filter_counts_every_drop():
    text_filter = TextFilter(FilterConfig(min_words=2, max_words=4), training_texts={"a copy here"})
    drops = Counter()
    kept = text_filter(
        ["  ", "one", "one two three four five", "a  copy here", "good text", "good  text", " new one "], drops
    )
    assert kept == ["good text", "new one"]
    assert drops == Counter(empty=1, too_short=1, too_long=1, training_copy=1, duplicate=1)


def fake_sampler(calls):
    def sample(n, seed):
        calls.append(seed)
        return [f"text {seed % 1000} item {i % 7}" for i in range(n)]  # repeats inside a shard: duplicates

    return sample


def test_generated_source_reaches_exactly_n_and_resumes_identically(tmp_path):
    source = TransferSource(type="generate", n=30)
    full = build_generated_source(
        tmp_path / "a", 0, source, fake_sampler([]), TextFilter(FilterConfig(min_words=1), set()), 10, 0
    )
    assert full.kept == 30 and full.generated == full.kept + full.drops["duplicate"] + full.surplus
    texts = [t for p in list_shards(tmp_path / "a") for t in read_shard(p)[0]]
    assert len(texts) == 30 == len(set(texts))
    # interrupted after two shards: resume regenerates only the rest, and the result is identical
    partial = tmp_path / "b"
    calls = []
    build_generated_source(
        partial,
        0,
        TransferSource(type="generate", n=full.kept),
        fake_sampler(calls),
        TextFilter(FilterConfig(min_words=1), set()),
        10,
        0,
    )
    for path in list_shards(partial)[2:]:
        path.unlink()
    calls.clear()
    resumed = build_generated_source(
        partial, 0, source, fake_sampler(calls), TextFilter(FilterConfig(min_words=1), set()), 10, 0
    )
    assert len(calls) == full.shards - 2
    assert [t for p in list_shards(partial) for t in read_shard(p)[0]] == texts
    assert resumed.to_dict() == full.to_dict()


def test_generated_source_stops_when_filters_reject_everything(tmp_path):
    source = TransferSource(type="generate", n=5)
    summary = build_generated_source(
        tmp_path, 0, source, lambda n, seed: ["same"] * n, TextFilter(FilterConfig(min_words=1), {"same"}), 10, 0
    )
    assert summary.kept == 0 and summary.note and summary.drops["training_copy"] == summary.generated


def test_augment_source_makes_filtered_variants_of_the_labeled_texts(tmp_path):
    from gendistill.transfer import build_augment_source

    labeled = ["the storm brought heavy rain today", "a late goal won the match for the team"]
    source = TransferSource(type="augment", copies=5, swap="shape")
    summary = build_augment_source(
        tmp_path, 0, source, TextFilter(FilterConfig(min_words=1), set(labeled)), labeled, 4, 0
    )
    texts = [t for p in list_shards(tmp_path) for t in read_shard(p)[0]]
    assert 0 < len(texts) == summary.kept <= 10 and len(set(texts)) == len(texts)
    assert not set(texts) & set(labeled)
    assert summary.details == {"swap_mode": "shape", "copies": 5}
