from collections import Counter

import pytest
import torch

from gendistill.config import FilterConfig, build_config
from gendistill.data.task import LabeledSet, TaskData
from gendistill.errors import YieldError
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


@pytest.mark.parametrize("damage", ["truncated", "replaced", "deleted"])
def test_a_damaged_shard_is_sampled_again_from_there_when_a_source_resumes(tmp_path, caplog, damage):
    """Resuming replays finished shards into the filter: a truncated one was a pyarrow traceback, a replaced one
    (valid Parquet, other texts: only its sha256 in shards.json tells) or a deleted one silently changed the set.
    Now the source warns once, naming the shard, and samples again from it: the set an undamaged run makes."""
    source = GenerateSource(n=30)
    full = fill_by_sampling(context(tmp_path / "a"), source, fake_sampler([]))
    texts = [t for p in list_shards(tmp_path / "a") for t in read_shard(p)[0]]
    partial = tmp_path / "b"
    fill_by_sampling(context(partial), source, fake_sampler([]))
    shards = list_shards(partial)
    for path in shards[3:]:  # interrupted after three shards
        path.unlink()
    victim = shards[1]
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:100])
    elif damage == "replaced":
        victim.write_bytes(shards[2].read_bytes())
    else:
        victim.unlink()
    calls = []
    resumed = fill_by_sampling(context(partial), source, fake_sampler(calls))
    assert len(calls) == full.shards - 1
    assert [t for p in list_shards(partial) for t in read_shard(p)[0]] == texts
    assert resumed.to_dict() == full.to_dict()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(victim) in warnings[0], warnings


def test_generated_source_stops_when_filters_reject_everything(tmp_path):
    summary = fill_by_sampling(context(tmp_path, training={"same"}), GenerateSource(n=5), lambda n, s: ["same"] * n)
    assert summary.kept == 0 and summary.note and summary.drops["training_copy"] == summary.generated


def yield_sampler(calls, new_every):
    """A sampler whose texts pass the filter once in `new_every` (the rest repeat one text: duplicates)."""

    def sample(n, seed):
        calls.append(seed)
        return [f"fresh text {seed} {i}" if i % new_every == 0 else "the same text" for i in range(n)]

    return sample


def test_a_source_at_a_normal_yield_reaches_n_and_min_yield_stops_one_under_it(tmp_path):
    calls = []  # 1 in 5 passes: 20% is far above the default min_yield 0.05

    def fill(directory, **fields):
        source = GenerateSource(n=60, **fields)
        return fill_by_sampling(context(directory, shard_size=50), source, yield_sampler(calls, 5))

    summary = fill(tmp_path / "a")
    assert summary.kept == 60 and summary.note is None and len(calls) == 6
    calls.clear()  # the same source asked for 30%: stopped once 200 texts are drawn (4 shards), with one line
    with pytest.raises(YieldError) as stop:
        fill(tmp_path / "b", min_yield=0.3)
    message = str(stop.value)
    assert len(calls) == 4 and "\n" not in message
    assert message.startswith("transfer.sources[0] (generate): stopped early: kept 41 of the 200 texts drawn toward")
    assert "(20.5%, under its min_yield 0.3)" in message and "duplicate 159" in message and "min_yield (0" in message
    # what it drew is kept: a rerun replays the 4 shards and stops at once, drawing nothing; min_yield 0 resumes
    calls.clear()
    with pytest.raises(YieldError):
        fill(tmp_path / "b", min_yield=0.3)
    assert calls == []
    resumed = fill(tmp_path / "b", min_yield=0)
    assert len(calls) == 2 and resumed.kept == 60
    assert [t for p in list_shards(tmp_path / "b") for t in read_shard(p)[0]] == [
        t for p in list_shards(tmp_path / "a") for t in read_shard(p)[0]
    ]


def test_a_source_under_its_min_yield_stops_after_200_drawn_and_min_yield_0_spends_the_budget(tmp_path):
    calls = []  # 1 in 100 passes
    with pytest.raises(YieldError, match=r"kept 3 of the 200 texts drawn toward n=100 \(1.5%"):
        fill_by_sampling(context(tmp_path / "a", shard_size=100), GenerateSource(n=100), yield_sampler(calls, 100))
    assert len(calls) == 2  # of the 10 shards (1,000 texts) the budget allows
    calls.clear()
    summary = fill_by_sampling(
        context(tmp_path / "b", shard_size=100), GenerateSource(n=100, min_yield=0), yield_sampler(calls, 100)
    )
    assert len(calls) == 11 and summary.kept == 12 and summary.note  # max(10 n, n + 10 shards) = 1,100 drawn


def test_a_sampler_that_returns_nothing_ends(tmp_path):
    summary = fill_by_sampling(context(tmp_path), GenerateSource(n=5, min_yield=0), lambda n, seed: [])
    assert summary.kept == 0 and summary.generated == 0 and summary.note


def test_augment_source_makes_filtered_variants_of_the_labeled_texts(tmp_path):
    labeled = ["the storm brought heavy rain today", "a late goal won the match for the team"]
    ctx = context(tmp_path, training=labeled, shard_size=4, labeled=labeled)
    summary = AugmentSource(copies=5, swap="shape").build(ctx)
    texts = [t for p in list_shards(tmp_path) for t in read_shard(p)[0]]
    assert 0 < len(texts) == summary.kept <= 10 and len(set(texts)) == len(texts)
    assert not set(texts) & set(labeled)
    assert summary.details == {"swap_mode": "shape", "copies": 5}


def file_rows(n, seed=0):
    import random

    rng = random.Random(seed)
    return [f"text number {i} about {rng.choice(['rain', 'goals', 'pasta'])}" for i in range(n)]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv"])
def test_file_source_streams_every_format_and_keeps_all_valid_texts_in_order(tmp_path, fmt):
    import pandas as pd

    from gendistill.sources.file import FileSource

    texts = file_rows(25) + ["", "a b c d e f g h i j k l m n o", "text number 3 about goals"]
    frame = pd.DataFrame({"body": texts})
    path = tmp_path / f"pool.{fmt}"
    {
        "jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        "parquet": lambda: frame.to_parquet(path),
        "csv": lambda: frame.to_csv(path, index=False),
    }[fmt]()
    ctx = context(tmp_path / "out", training=["text number 0 about rain"], shard_size=10)
    ctx.text_filter.config.max_words = 12
    summary = FileSource(path=str(path), text_column="body").build(ctx)
    kept = [t for p in list_shards(tmp_path / "out") for t in read_shard(p)[0]]
    expected = [t for t in dict.fromkeys(texts[:25]) if t != "text number 0 about rain"]
    if "text number 3 about goals" not in texts[:25]:
        expected.append("text number 3 about goals")
    assert kept == expected and summary.kept == len(kept) and summary.shards == 3
    assert summary.generated == len(texts)
    assert summary.generated == summary.kept + sum(summary.drops.values()) + summary.surplus


def test_file_source_samples_n_distinct_texts_independent_of_the_file_order(tmp_path):
    import random

    import pandas as pd

    from gendistill.sources.file import FileSource

    texts = file_rows(300)
    samples = []
    for order in (0, 1):
        shuffled = list(texts) + texts[:50]  # duplicates
        random.Random(order).shuffle(shuffled)
        path = tmp_path / f"pool{order}.parquet"
        pd.DataFrame({"text": shuffled}).to_parquet(path)
        out = tmp_path / f"out{order}"
        summary = FileSource(path=str(path), n=40).build(context(out, shard_size=16))
        sample = [t for p in list_shards(out) for t in read_shard(p)[0]]
        assert summary.kept == 40 == len(set(sample)) and set(sample) <= set(texts)
        samples.append(sample)
    assert samples[0] == samples[1]  # the same seeded sample in the same order, whatever the file order
