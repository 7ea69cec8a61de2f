from collections import Counter

import torch

from gendistill.config import FilterConfig, build_config
from gendistill.data import LabeledSet, TaskData
from gendistill.pipeline.layout import RunLayout
from gendistill.sources.augment import AugmentSource
from gendistill.sources.base import SourceContext, TextFilter, fill_by_sampling, list_shards, read_shard
from gendistill.sources.generate import GenerateSource


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


def context(directory, training=(), shard_size=10, labeled=("a b", "c d")):
    config = build_config(
        {"data": {"train": "unused.jsonl"}, "teacher": {"model": "unused"}, "transfer": {"shard_size": shard_size}}
    )
    task = TaskData(LabeledSet(list(labeled), [0, 1]), None, None, ["x", "y"])
    text_filter = TextFilter(FilterConfig(min_words=1), set(training))
    return SourceContext(config, RunLayout(directory), task, 0, directory, text_filter, torch.device("cpu"))


def test_generated_source_reaches_exactly_n_and_resumes_identically(tmp_path):
    source = GenerateSource(n=30)
    full = fill_by_sampling(context(tmp_path / "a"), source, fake_sampler([]))
    assert full.kept == 30 and full.generated == full.kept + full.drops["duplicate"] + full.surplus
    texts = [t for p in list_shards(tmp_path / "a") for t in read_shard(p)[0]]
    assert len(texts) == 30 == len(set(texts))
    # interrupted after two shards: resume regenerates only the rest, and the result is identical
    partial = tmp_path / "b"
    calls = []
    fill_by_sampling(context(partial), source, fake_sampler(calls))
    for path in list_shards(partial)[2:]:
        path.unlink()
    calls.clear()
    resumed = fill_by_sampling(context(partial), source, fake_sampler(calls))
    assert len(calls) == full.shards - 2
    assert [t for p in list_shards(partial) for t in read_shard(p)[0]] == texts
    assert resumed.to_dict() == full.to_dict()


def test_generated_source_stops_when_filters_reject_everything(tmp_path):
    summary = fill_by_sampling(context(tmp_path, training={"same"}), GenerateSource(n=5), lambda n, s: ["same"] * n)
    assert summary.kept == 0 and summary.note and summary.drops["training_copy"] == summary.generated


def test_augment_source_makes_filtered_variants_of_the_labeled_texts(tmp_path):
    labeled = ["the storm brought heavy rain today", "a late goal won the match for the team"]
    ctx = context(tmp_path, training=labeled, shard_size=4, labeled=labeled)
    summary = AugmentSource(copies=5, swap="shape").build(ctx)
    texts = [t for p in list_shards(tmp_path) for t in read_shard(p)[0]]
    assert 0 < len(texts) == summary.kept <= 10 and len(set(texts)) == len(texts)
    assert not set(texts) & set(labeled)
    assert summary.details == {"swap_mode": "shape", "copies": 5}
