"""The `retrieve` source: nearest corpus rows of the labeled texts, class-balanced, never a labeled or test text,
embedded once per corpus and encoder (a second run reuses the cache), refused at preflight when it cannot run."""

import json
import random
import sys

import numpy as np
import pytest
import torch
from conftest import LABELS, labeled, make_rows, make_tiny_config, write_jsonl
from test_errors import assert_user_error, base_config, run_cli

import gendistill
from gendistill.config import FilterConfig, build_config
from gendistill.data import ann_index
from gendistill.data.corpus_embeddings import EmbeddingsFile
from gendistill.data.task import LabeledSet, TaskData
from gendistill.pipeline.layout import RunLayout
from gendistill.sections import key_payload
from gendistill.sources.base import SourceContext, TextFilter, list_shards, normalize, read_shard
from gendistill.sources.retrieve import RetrieveSource
from gendistill.stages.transfer import transfer_key

pytest.importorskip("faiss")

OFF_TOPIC = ["invoice", "tax", "ledger", "audit", "mortgage", "pension", "dividend", "broker", "payroll", "equity"]


def off_topic_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(OFF_TOPIC, 4) + rng.sample(["it", "is", "of", "for", "our"], 3)) for _ in range(count)]


@pytest.fixture
def corpus(tmp_path, task_dir):
    """60 new on-topic texts (20 per class), 6 labeled and 6 test texts, and 240 off-topic texts, shuffled."""
    train = [json.loads(line)["text"] for line in (task_dir / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line)["text"] for line in (task_dir / "test.jsonl").read_text().splitlines()]
    on_topic = [row["text"] for row in make_rows(20, 7)]
    texts = on_topic + train[:6] + test[:6] + off_topic_texts(240, 0)
    random.Random(1).shuffle(texts)
    return write_jsonl(tmp_path / "corpus.jsonl", [{"body": text} for text in texts]), set(on_topic)


def source_context(directory, task_dir, teacher_dir):
    config = build_config(
        {"data": {"train": str(task_dir / "train.jsonl")}, "teacher": {"model": str(teacher_dir)}, "device": "cpu"}
    )
    train_texts, train_labels = labeled(20, 0)
    test_texts, test_labels = labeled(10, 1)
    task = TaskData(LabeledSet(train_texts, train_labels), LabeledSet(test_texts, test_labels), None, LABELS)
    text_filter = TextFilter(FilterConfig(min_words=1), {normalize(t) for t in train_texts})
    directory.mkdir(parents=True, exist_ok=True)
    return SourceContext(config, RunLayout(directory), task, 0, directory, text_filter, torch.device("cpu"))


def retrieve_transfer_key(task_dir, teacher_dir, **source) -> str:
    """The transfer stage's key (as JSON) of a run whose one source is a retrieve source with these options."""
    raw = {
        "data": {"train": str(task_dir / "train.jsonl")},
        "teacher": {"model": str(teacher_dir)},
        "transfer": {"sources": [{"type": "retrieve", "corpus": "corpus.jsonl", "n": 10, **source}]},
    }
    return json.dumps(key_payload(transfer_key(build_config(raw))), sort_keys=True)


def kept_texts(directory):
    return [text for path in list_shards(directory) for text in read_shard(path)[0]]


def test_retrieves_on_topic_class_balanced_texts_and_never_a_labeled_or_test_text(
    tmp_path, task_dir, tiny_teacher_dir, corpus
):
    path, on_topic = corpus
    source = RetrieveSource(corpus=str(path), text_column="body", n=30, per_query=20, cache_dir=str(tmp_path / "c"))
    summary = source.build(source_context(tmp_path / "run", task_dir, tiny_teacher_dir))
    texts = kept_texts(tmp_path / "run")
    assert summary.kept == len(texts) == 30 == len(set(texts))
    assert sum(text in on_topic for text in texts) >= 24  # mostly on-topic (random-init tiny encoder)
    assert summary.details["per_class"] == {"cooking": 10, "sports": 10, "weather": 10}
    labeled_or_test = {normalize(t) for t in labeled(20, 0)[0] + labeled(10, 1)[0]}
    assert not labeled_or_test & set(texts)
    assert summary.details["corpus_rows"] == 312 and summary.details["embedded_now"] == 312


def test_second_run_embeds_no_corpus_text(tmp_path, task_dir, tiny_teacher_dir, corpus, monkeypatch):
    path, _ = corpus
    monkeypatch.setenv("GENDISTILL_RETRIEVE_CACHE", str(tmp_path / "shared"))
    source = RetrieveSource(corpus=str(path), text_column="body", n=30, per_query=20)
    first = source.build(source_context(tmp_path / "a", task_dir, tiny_teacher_dir))
    second = source.build(source_context(tmp_path / "b", task_dir, tiny_teacher_dir))
    assert first.details["corpus_encoder_calls"] > 0 and not first.details["index_reused"]
    assert second.details["corpus_encoder_calls"] == 0 and second.details["embedded_now"] == 0
    assert second.details["embedded_reused"] == 312 and second.details["index_reused"]
    assert kept_texts(tmp_path / "a") == kept_texts(tmp_path / "b")
    assert len(list((tmp_path / "shared").iterdir())) == 1


def test_interrupted_embedding_resumes_where_it_stopped(tmp_path, task_dir, tiny_teacher_dir, corpus):
    path, _ = corpus
    source = RetrieveSource(corpus=str(path), text_column="body", n=30, per_query=20, cache_dir=str(tmp_path / "c"))
    source.build(source_context(tmp_path / "a", task_dir, tiny_teacher_dir))
    (folder,) = (tmp_path / "c").iterdir()
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "done": 200}))  # as if killed after 200 rows
    for index in folder.glob("index*.faiss"):
        index.unlink()
    again = source.build(source_context(tmp_path / "b", task_dir, tiny_teacher_dir))
    assert again.details["embedded_reused"] == 200 and again.details["embedded_now"] == 112
    assert kept_texts(tmp_path / "a") == kept_texts(tmp_path / "b")


def test_a_corpus_sharing_blocks_with_a_cached_one_embeds_only_its_own_rows(
    tmp_path, task_dir, tiny_teacher_dir, corpus, monkeypatch
):
    """A corpus that grew by appended rows copies the vectors of the blocks it shares with the cached one; the
    copied vectors are the ones a fresh embedding gives."""
    from gendistill.data import corpus_embeddings

    monkeypatch.setattr(corpus_embeddings, "BLOCK_ROWS", 64)
    path, _ = corpus
    grown = tmp_path / "grown.jsonl"
    grown.write_text(path.read_text() + "".join(json.dumps({"body": t}) + "\n" for t in off_topic_texts(100, 5)))

    def build(corpus_path, cache, run):
        source = RetrieveSource(corpus=str(corpus_path), text_column="body", n=30, per_query=20, cache_dir=str(cache))
        return source.build(source_context(tmp_path / run, task_dir, tiny_teacher_dir)).details

    first = build(path, tmp_path / "shared", "a")
    second = build(grown, tmp_path / "shared", "b")
    fresh = build(grown, tmp_path / "alone", "c")
    assert first["embedded_copied"] == 0 and fresh["embedded_copied"] == 0
    # 312 rows = 4 whole blocks of 64 + 56: the whole blocks are shared, the rest and the 100 new rows are not
    assert second["corpus_rows"] == 412 and second["embedded_now"] == 412 and second["embedded_copied"] == 256

    def vectors(cache):
        (meta_path,) = [path for path in cache.glob("*/meta.json") if "grown" in path.read_text()]
        meta = json.loads(meta_path.read_text())
        file = EmbeddingsFile(meta_path.parent / "embeddings.f16", meta["rows"], meta["dim"])
        return file.take(np.arange(meta["rows"]))

    shared, alone = vectors(tmp_path / "shared"), vectors(tmp_path / "alone")
    assert np.abs(shared.astype(np.float32) - alone.astype(np.float32)).max() < 2e-3
    assert np.abs(shared[:256]).sum() > 0  # copied rows are vectors, not the sparse file's zeros
    assert kept_texts(tmp_path / "b") == kept_texts(tmp_path / "c")


def test_a_block_whose_recorded_vectors_are_gone_is_embedded_not_copied(
    tmp_path, task_dir, tiny_teacher_dir, corpus, monkeypatch
):
    from gendistill.data import corpus_embeddings

    monkeypatch.setattr(corpus_embeddings, "BLOCK_ROWS", 64)
    path, _ = corpus
    grown = tmp_path / "grown.jsonl"
    grown.write_text(path.read_text() + json.dumps({"body": "one more row"}) + "\n")
    source = RetrieveSource(corpus=str(path), text_column="body", n=30, per_query=20, cache_dir=str(tmp_path / "c"))
    source.build(source_context(tmp_path / "a", task_dir, tiny_teacher_dir))
    (vectors_file,) = (tmp_path / "c").glob("*/embeddings.f16")
    vectors_file.write_bytes(bytes(vectors_file.stat().st_size))  # rewritten (zeros) after its meta was recorded
    again = RetrieveSource(corpus=str(grown), text_column="body", n=30, per_query=20, cache_dir=str(tmp_path / "c"))
    details = again.build(source_context(tmp_path / "b", task_dir, tiny_teacher_dir)).details
    assert details["embedded_now"] == 313 and details["embedded_copied"] == 0


def test_plain_text_corpus(tmp_path, task_dir, tiny_teacher_dir):
    lines = [row["text"] for row in make_rows(10, 7)] + off_topic_texts(30, 1)
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n\n")
    source = RetrieveSource(corpus=str(path), n=12, per_query=10, cache_dir=str(tmp_path / "c"))
    summary = source.build(source_context(tmp_path / "run", task_dir, tiny_teacher_dir))
    assert summary.kept == 12 and summary.details["corpus_rows"] == 60


def test_hf_dataset_corpus_is_streamed(tmp_path, task_dir, tiny_teacher_dir, corpus):
    """`hf:` with a local dataset folder (offline): the same rows as the JSONL, so the same cache entry."""
    path, _ = corpus
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text(path.read_text())
    cache = str(tmp_path / "c")
    first = RetrieveSource(corpus=str(path), text_column="body", n=30, per_query=20, cache_dir=cache)
    first.build(source_context(tmp_path / "a", task_dir, tiny_teacher_dir))
    source = RetrieveSource(corpus=f"hf:{folder}@train", text_column="body", n=30, per_query=20, cache_dir=cache)
    summary = source.build(source_context(tmp_path / "b", task_dir, tiny_teacher_dir))
    assert summary.details["embedded_reused"] == 312 and summary.details["embedded_now"] == 0
    assert kept_texts(tmp_path / "a") == kept_texts(tmp_path / "b")


def test_pipeline_with_a_retrieve_source_distils(tmp_path, task_dir, tiny_teacher_dir, corpus):
    path, _ = corpus
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"] = [
        {"type": "retrieve", "corpus": str(path), "text_column": "body", "n": 24, "cache_dir": str(tmp_path / "c")}
    ]
    config["student"]["init"] = "random"
    report = gendistill.run(build_config(config), tmp_path / "run")
    (source,) = report.transfer_set.sources
    assert source.type == "retrieve" and source.kept == 24
    assert report.train_examples >= 24
    assert (tmp_path / "run" / "student").exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"corpus": "missing.jsonl"}, ("missing.jsonl", "file not found")),
        ({"text_column": "content"}, ("no text column 'content'", "transfer.sources[0].text_column")),
        ({"encoder": "no_such_encoder_dir/x/y"}, ("transfer.sources[0].encoder", "no such folder")),
    ],
)
def test_preflight_refuses_a_source_that_cannot_run(tmp_path, task_dir, tiny_teacher_dir, corpus, change, expected):
    path, _ = corpus
    config = base_config(task_dir, tiny_teacher_dir)
    source = {"type": "retrieve", "corpus": str(path), "text_column": "body", "n": 10, **change}
    if change.get("corpus"):
        source["corpus"] = str(tmp_path / change["corpus"])
    config["transfer"] = {"sources": [source]}
    assert_user_error(run_cli(tmp_path, config), *expected)


def test_without_faiss_the_preflight_names_the_extra(tmp_path, task_dir, tiny_teacher_dir, corpus, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ModuleNotFoundError
    path, _ = corpus
    config = base_config(task_dir, tiny_teacher_dir)
    config["transfer"] = {"sources": [{"type": "retrieve", "corpus": str(path), "text_column": "body"}]}
    assert_user_error(run_cli(tmp_path, config), "pip install 'gendistill[retrieve]'")


def test_the_default_encoder_is_keyed_so_a_new_teacher_model_rebuilds_the_transfer_set(task_dir, tiny_teacher_dir):
    """With `encoder` left out the teacher's model embeds the corpus: changing `teacher.model` must rebuild the
    retrieved set, and a run without a retrieve source keeps the transfer key it had."""

    def key(teacher_model, **source):
        raw = {
            "data": {"train": str(task_dir / "train.jsonl")},
            "teacher": {"model": teacher_model},
            "transfer": {"sources": [{"type": "retrieve", "corpus": "corpus.jsonl", "n": 10, **source}]},
        }
        return transfer_key(build_config(raw))

    assert key(str(tiny_teacher_dir)) != key("another/encoder")
    assert key(str(tiny_teacher_dir), encoder="e") == key("another/encoder", encoder="e")
    plain = build_config({"data": {"train": str(task_dir / "train.jsonl")}, "teacher": {"model": "m"}})
    assert set(transfer_key(plain)) == {"transfer", "seed"}


def clustered_vectors(rows: int, dim: int, centres: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(`rows` unit vectors around `centres` random centres, float16, with two zero rows for empty texts;
    20 queries drawn around the same centres)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)

    def draw(count):
        points = means[rng.integers(0, centres, count)] + 0.3 * rng.standard_normal((count, dim)) / np.sqrt(dim)
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    vectors = draw(rows).astype(np.float16)
    vectors[[5, 77]] = 0
    return vectors, draw(20).astype(np.float32)


def exact_top_k(vectors, queries, k):
    scores = queries @ vectors.astype(np.float32).T
    scores[:, ~vectors.any(axis=1)] = -np.inf
    return [[int(i) for i in np.lexsort((np.arange(len(row)), -row))[:k]] for row in scores]


def test_the_ivf_index_returns_exact_searchs_top_k(tmp_path, monkeypatch):
    """Above IVF_MIN_ROWS the index is IVF-PQ (few lists probed, few candidates here), re-ranked exactly from the
    vectors file: the same top k as exact search, empty rows never among them."""
    monkeypatch.setattr(ann_index, "IVF_MIN_ROWS", 300)
    monkeypatch.setattr(ann_index, "NPROBE", 3)
    monkeypatch.setattr(ann_index, "RERANK", 4)
    monkeypatch.setattr(ann_index, "RERANK_MIN", 16)
    vectors, queries = clustered_vectors(800, 32, 40, 0)
    vectors.tofile(tmp_path / "embeddings.f16")
    rows = EmbeddingsFile(tmp_path / "embeddings.f16", 800, 32)
    index, reused = ann_index.CorpusIndex.build_or_load(rows, tmp_path)
    assert index.kind == "ivfpq" and not reused and index._index.nlist == 20
    assert index.search(queries, 10) == exact_top_k(vectors, queries, 10)
    again, reused = ann_index.CorpusIndex.build_or_load(rows, tmp_path)
    assert reused and again.kind == "ivfpq"
    assert again.search(queries, 10) == exact_top_k(vectors, queries, 10)
    assert sorted(p.name for p in tmp_path.glob("index*")) == ["index-ivfpq-v1.faiss"]


def test_an_index_of_an_older_kind_in_the_cache_is_not_read(tmp_path):
    """The HNSW `index.faiss` of earlier releases (here over other vectors) is neither loaded nor kept."""
    import faiss

    vectors, queries = clustered_vectors(300, 32, 10, 1)
    old = faiss.IndexIDMap(faiss.IndexHNSWSQ(32, faiss.ScalarQuantizer.QT_fp16, 32, faiss.METRIC_INNER_PRODUCT))
    other, _ = clustered_vectors(300, 32, 10, 2)
    old.add_with_ids(other.astype(np.float32), np.arange(300, dtype=np.int64)[::-1].copy())
    faiss.write_index(old, str(tmp_path / "index.faiss"))
    index, reused = ann_index.CorpusIndex.build_or_load(vectors, tmp_path)
    assert not reused and index.kind == "flat"
    assert index.search(queries, 5) == exact_top_k(vectors, queries, 5)
    assert sorted(p.name for p in tmp_path.glob("index*")) == ["index-flat-v1.faiss"]


def test_the_domain_classifier_tells_the_tasks_kind_of_text_from_the_corpus(tmp_path):
    """Labeled vectors around one direction, a corpus of 90% rows around another and 10% near the labeled ones:
    most rows of the task's kind pass, almost none of the others (the on-task rows among the random corpus rows it
    is fitted against make it stricter: positive-unlabeled learning)."""
    from gendistill.data.domain_filter import DomainClassifier

    rng = np.random.default_rng(0)
    task_centre, other_centre = np.eye(16)[0], np.eye(16)[1]

    def around(centre, count):
        vectors = centre + 0.4 * rng.standard_normal((count, 16))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    corpus = np.vstack([around(other_centre, 900), around(task_centre, 100)]).astype(np.float16)
    path = tmp_path / "vectors.f16"
    path.write_bytes(corpus.tobytes())
    classifier = DomainClassifier(around(task_centre, 20), EmbeddingsFile(path, 1000, 16), seed=0)
    scores = classifier.scores(list(range(1000)))
    on_task = np.array([scores[row] for row in range(900, 1000)])
    off_task = np.array([scores[row] for row in range(900)])
    assert (on_task >= 0.5).mean() > 0.7 and (off_task >= 0.5).mean() < 0.05


def test_rows_the_domain_classifier_passes_come_first_in_their_class_and_none_is_lost():
    from gendistill.sources.retrieve import _class_queues

    neighbours, labels = [[10, 11, 12], [20, 21, 12]], [0, 1]
    assert [list(q) for q in _class_queues(neighbours, labels).values()] == [[10, 11, 12], [20, 21]]
    queues = _class_queues(neighbours, labels, in_domain={12, 21})
    assert [list(q) for q in queues.values()] == [[12, 10, 11], [21, 20]]


def test_spread_draws_each_classs_nearest_in_domain_rows_at_random_and_keeps_the_rest_nearest_first():
    from gendistill.sources.retrieve import _class_queues

    neighbours = [list(range(100, 140)), list(range(200, 240))]
    in_domain = set(range(100, 130)) | set(range(200, 230))

    def queues(spread=None, filtered=True):
        return [list(q) for q in _class_queues(neighbours, [0, 1], in_domain if filtered else None, spread).values()]

    nearest, spread = queues(), queues((3, 20))
    assert spread == queues((3, 20)) and spread != queues((4, 20))
    for near, drawn in zip(nearest, spread, strict=True):
        assert sorted(drawn[:20]) == near[:20] and drawn[20:] == near[20:]  # the 20 nearest drawn, the rest by rank
        assert drawn[:8] != near[:8] and max(drawn[:8]) - min(drawn[:8]) > 8  # not the eight nearest
    for near, drawn in zip(nearest, queues((3, None)), strict=True):
        assert sorted(drawn[:30]) == near[:30] and drawn[30:] == near[30:]  # no width: every in-domain row drawn
    assert [sorted(q) for q in queues((3, None), filtered=False)] == [list(range(100, 140)), list(range(200, 240))]


def test_spread_keeps_n_class_balanced_texts_and_only_a_spread_pick_changes_the_transfer_key(
    tmp_path, task_dir, tiny_teacher_dir, corpus
):
    path, on_topic = corpus

    def build(run, **options):
        source = RetrieveSource(
            corpus=str(path), text_column="body", n=30, per_query=20, cache_dir=str(tmp_path / "c"), **options
        )
        summary = source.build(source_context(tmp_path / run, task_dir, tiny_teacher_dir))
        return summary, kept_texts(tmp_path / run)

    (near, near_texts), (spread, spread_texts) = build("near"), build("spread", pick="spread")
    assert spread.kept == len(set(spread_texts)) == 30 and spread.details["per_class"] == near.details["per_class"]
    assert sum(text in on_topic for text in spread_texts) >= 24 and set(spread_texts) != set(near_texts)

    def key(**source):
        return retrieve_transfer_key(task_dir, tiny_teacher_dir, **source)

    assert key(pick="nearest") == key() != key(pick="spread")
    assert json.loads(key(pick="spread"))["sources_outside_fields"]["0"]["spread_width"] == 2


def test_the_search_goes_deeper_while_too_few_candidates_are_the_tasks_kind_of_text(
    tmp_path, task_dir, tiny_teacher_dir, corpus
):
    path, on_topic = corpus

    def build(run, **options):
        source = RetrieveSource(corpus=str(path), text_column="body", n=30, cache_dir=str(tmp_path / "c"), **options)
        details = source.build(source_context(tmp_path / run, task_dir, tiny_teacher_dir)).details
        return details, kept_texts(tmp_path / run)

    shallow, _ = build("off", per_query=1, domain_filter=False)
    deeper, texts = build("on", per_query=1)
    assert shallow["per_query_searched"] == 1 and shallow["distinct_candidates"] < 60
    assert deeper["per_query_searched"] > 1 and deeper["in_domain_candidates"] >= 60
    assert len(texts) == 30 and sum(text in on_topic for text in texts) >= 24


def test_the_deepening_search_stops_when_enough_pass_at_its_deepest_or_when_it_covers_the_corpus():
    from gendistill.sources.retrieve import DEEPEST, deepening_search

    depths = []

    def search(depth):  # two queries; row r is on-task when r is even
        depths.append(depth)
        return [list(range(0, depth)), list(range(1000, 1000 + depth))]

    def on_task(rows):
        return {row for row in rows if row % 2 == 0}

    found = deepening_search(search, 2, 5, 10**6, on_task)  # needs 2 x 5 on-task rows: depth 16 gives 16
    assert depths == [2, 4, 8, 16] and found.per_query == 16 < DEEPEST * 2 and len(found.in_domain) == 16
    assert found.candidates == sorted(set(range(16)) | set(range(1000, 1016)))
    depths.clear()
    assert deepening_search(search, 2, 5, 10**6).per_query == 2 and depths == [2]  # no classifier: one search
    depths.clear()
    nothing = deepening_search(search, 2, 5, 10**6, lambda rows: set())
    assert nothing.per_query == DEEPEST * 2 and depths[-1] == DEEPEST * 2 and nothing.in_domain == set()
    depths.clear()
    assert deepening_search(search, 2, 5, 12, lambda rows: set()).per_query == 8 and depths == [2, 4, 8]


def test_a_stricter_domain_threshold_passes_fewer_candidates_and_enters_the_transfer_key(
    tmp_path, task_dir, tiny_teacher_dir, corpus
):
    from gendistill.data.domain_filter import DEFAULT_THRESHOLD

    path, _on_topic = corpus

    def details(run, threshold):
        source = RetrieveSource(
            corpus=str(path),
            text_column="body",
            n=5,
            per_query=20,
            cache_dir=str(tmp_path / "c"),
            domain_threshold=threshold,
        )
        return source.build(source_context(tmp_path / run, task_dir, tiny_teacher_dir)).details

    loose, strict = details("loose", 0.05), details("strict", 0.8)
    assert loose["per_query_searched"] == 20 and loose["in_domain_candidates"] == loose["distinct_candidates"]
    # fewer than 2n pass the stricter threshold among the same 20 neighbours, so the search went deeper, and
    # even there it passes only part of what it found
    assert strict["per_query_searched"] > 20 and strict["distinct_candidates"] > loose["distinct_candidates"]
    assert strict["in_domain_candidates"] < strict["distinct_candidates"]

    def key(**source):
        return retrieve_transfer_key(task_dir, tiny_teacher_dir, **source)

    assert key(domain_threshold=DEFAULT_THRESHOLD) == key() != key(domain_threshold=0.9)
