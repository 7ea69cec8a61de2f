"""Recall of the `retrieve` source's index (gendistill.data.ann_index: IVF-PQ + exact re-rank from the float16
vectors file, or flat under IVF_MIN_ROWS) against exact search, on three kinds of vectors:

  minilm        real texts embedded by all-MiniLM-L6-v2 (the quality benchmark's encoder): the banking77 and
                clinc150 train pools, 10,000 GoEmotions texts and the off-task corpus (UN debate sentences) up to
                --n rows; queries: test texts of those three datasets (the retrieve source's use: labeled texts
                asking a mixed corpus). Needs --data-dir (the data files) and --encoder.
  tiny-encoder  the synthetic corpus of `benchmarks/retrieval.py scale` embedded by its random-init 2-layer BERT
                (384-d; the same cache, so a scale run's embeddings are reused), queries: 12-word synthetic texts
  clustered     unit vectors around 1,000 random centres (noise of norm 0.6: cosine ~0.75 within a cluster),
                queries drawn the same way
  random        uniform random unit vectors (no structure: the worst case, no near neighbours to find)

Each set is written as a float16 vectors file and indexed as the source does it (one thread); recall@k is the
share of exact search's top k (float32 inner products of the same float16 vectors) that the index returns.

    python benchmarks/retrieval_recall.py --n 100000 --encoder models/all-MiniLM-L6-v2
    # writes benchmarks/results/retrieval/recall.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

KS = (10, 50)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def synthetic(kind: str, n: int, queries: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    if kind == "random":
        return unit(rng.standard_normal((n, dim), dtype=np.float32)), unit(
            rng.standard_normal((queries, dim), dtype=np.float32)
        )
    centres = unit(rng.standard_normal((1000, dim), dtype=np.float32))

    def draw(count: int) -> np.ndarray:
        noise = unit(rng.standard_normal((count, dim), dtype=np.float32)) * 0.6
        return unit(centres[rng.integers(0, len(centres), count)] + noise)

    return draw(n), draw(queries)


def tiny_encoder(n: int, queries: int, cache: Path) -> tuple[Path, np.ndarray]:
    """(the scale benchmark's embeddings file of an n-row corpus, 12-word query texts embedded)."""
    from retrieval import WORDS, _synthetic_corpus, _tiny_encoder

    from gendistill.data.corpus_embeddings import TextEncoder, embed_corpus

    work = cache / "retrieval-scale"
    work.mkdir(parents=True, exist_ok=True)
    corpus, encoder_dir = work / f"corpus-{n}.parquet", work / "encoder"
    if not corpus.exists():
        _synthetic_corpus(corpus, n)
    _tiny_encoder(encoder_dir)
    encoder = TextEncoder(str(encoder_dir), device="cpu", max_length=32)
    embeddings = embed_corpus(
        str(corpus), "text", max_chars=2000, encoder_name=str(encoder_dir), max_length=32,
        load_encoder=lambda: encoder, cache_dir=work / f"cache-{n}", batch_size=256,
    )  # fmt: skip
    texts = [" ".join(random.Random(10_000 + i).choices(WORDS, k=12)) for i in range(queries)]
    return embeddings.file.path, encoder(texts, 256)


def minilm(n: int, queries: int, data_dir: Path, encoder_dir: str, cache: Path) -> tuple[Path, np.ndarray]:
    """(the embeddings file of a real mixed corpus of n texts, `queries` test texts embedded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gendistill.data.corpus_embeddings import TextEncoder, embed_corpus

    def texts(path: Path) -> list[str]:
        return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]

    work = cache / "retrieval-recall"
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / f"real-{n}.parquet"
    if not corpus.exists():
        pool = texts(data_dir / "banking77/train.jsonl") + texts(data_dir / "clinc150/train.jsonl")
        pool += texts(data_dir / "goemotions/train.jsonl")[:10_000]
        offtask = pq.read_table(data_dir / "offtask_corpus/corpus.parquet", columns=["text"]).column("text")
        pool += offtask.slice(0, max(0, n - len(pool))).to_pylist()
        pool = pool[:n]
        random.Random(0).shuffle(pool)
        pq.write_table(pa.table({"text": pool}), corpus)
    encoder = TextEncoder(encoder_dir, device="cpu", max_length=128)
    embeddings = embed_corpus(
        str(corpus), "text", max_chars=2000, encoder_name=encoder_dir, max_length=128,
        load_encoder=lambda: encoder, cache_dir=work / "cache-real", batch_size=64,
    )  # fmt: skip
    tests = [t for name in ("banking77", "clinc150", "goemotions") for t in texts(data_dir / name / "test.jsonl")]
    return embeddings.file.path, encoder(random.Random(0).sample(tests, queries), 64)


def exact_top_k(vectors, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top k over a Rows source, streamed in blocks (ties: the lower row)."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start, block in vectors.blocks(16_384):
        scores = queries @ block.astype(np.float32).T
        rows = np.broadcast_to(np.arange(start, start + len(block)), scores.shape)
        scores, rows = np.concatenate([best_scores, scores], 1), np.concatenate([best_rows, rows], 1)
        order = np.lexsort((rows, -scores), axis=1)[:, :k]
        best_scores, best_rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
    return best_rows


def measure(name: str, data_path: Path, queries: np.ndarray, work: Path) -> dict:
    from gendistill.data import ann_index
    from gendistill.data.corpus_embeddings import EmbeddingsFile

    dim = queries.shape[1]
    rows = data_path.stat().st_size // (2 * dim)
    vectors = EmbeddingsFile(data_path, rows, dim)
    folder = work / f"index-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    index, _ = ann_index.CorpusIndex.build_or_load(vectors, folder, threads=1)
    build = time.perf_counter() - started
    truth = exact_top_k(vectors, queries, max(KS))
    row = {"vectors": name, "n": rows, "kind": index.kind, "build_s": round(build, 1)}
    if index.kind == "ivfpq":
        row |= {"nlist": ann_index.ivf_lists(rows), "pq_codes": ann_index.pq_subquantizers(dim)}
        row |= {"nprobe": ann_index.NPROBE}
    for k in KS:
        started = time.perf_counter()
        found = index.search(queries, k)
        row[f"query_ms@{k}"] = round(1000 * (time.perf_counter() - started) / len(queries), 2)
        row[f"recall@{k}"] = round(
            float(np.mean([len(set(f) & set(t[:k].tolist())) / k for f, t in zip(found, truth, strict=True)])), 4
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--sets", nargs="+", default=["minilm", "tiny-encoder", "clustered", "random"])
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/data"))
    parser.add_argument("--encoder", default="models/all-MiniLM-L6-v2")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/retrieval"))
    args = parser.parse_args()
    work = args.cache / "retrieval-recall"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.sets:
        if name == "minilm":
            path, queries = minilm(args.n, args.queries, args.data_dir, args.encoder, args.cache)
        elif name == "tiny-encoder":
            path, queries = tiny_encoder(args.n, args.queries, args.cache)
        else:
            data, queries = synthetic(name, args.n, args.queries, 384)
            path = work / f"{name}-{args.n}.f16"
            data.astype(np.float16).tofile(path)
            del data
        row = measure(name, path, np.ascontiguousarray(queries, dtype=np.float32), work)
        print(json.dumps(row), flush=True)
        results.append(row)
    out = {"results": results, "command": "python " + " ".join(sys.argv)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recall.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
