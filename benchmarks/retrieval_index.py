"""Which ANN library the `retrieve` source builds its index with: faiss-cpu, usearch and hnswlib side by side.

Each builds an HNSW graph (M=32, ef_construction=128, ef_search=64, inner product on unit vectors) over `--n`
random `--dim`-d float32 vectors; we time the build and `--queries` top-10 searches, take recall@10 against an
exact search (numpy, blocked), and measure the index's memory as the resident-set growth of a fresh (forked)
process while it is built (the library imported first); `usearch-f16` and `faiss-f16` (IndexHNSWSQ, fp16) store
the vectors in float16, as the `retrieve` source does. Random vectors are the hard case for a graph index (no
cluster structure), so recall here is a floor.

    python benchmarks/retrieval_index.py            # 100k x 384, 1000 queries, one thread
    python benchmarks/retrieval_index.py --n 20000  # quicker
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import time
from collections.abc import Callable

import numpy as np
import psutil

M, EF_CONSTRUCTION, EF_SEARCH, K = 32, 128, 64, 10


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    rows = []
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ data.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
        rows.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(rows)


def faiss_index(data: np.ndarray, threads: int, fp16: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(threads)
    if fp16:  # the graph over float16 codes (scalar quantizer), half the vectors' memory
        index = faiss.IndexHNSWSQ(data.shape[1], faiss.ScalarQuantizer.QT_fp16, M, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexHNSWFlat(data.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.add(data)
    index.hnsw.efSearch = EF_SEARCH
    return lambda queries: index.search(queries, K)[1]


def usearch_index(data: np.ndarray, threads: int, dtype: str = "f32") -> Callable[[np.ndarray], np.ndarray]:
    from usearch.index import Index

    index = Index(ndim=data.shape[1], metric="ip", dtype=dtype, connectivity=M, expansion_add=EF_CONSTRUCTION)
    index.expansion_search = EF_SEARCH
    index.add(np.arange(len(data)), data, threads=threads)
    return lambda queries: index.search(queries, K, threads=threads).keys


def hnswlib_index(data: np.ndarray, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=data.shape[1])
    index.init_index(max_elements=len(data), M=M, ef_construction=EF_CONSTRUCTION)
    index.set_num_threads(threads)
    index.add_items(data, np.arange(len(data)))
    index.set_ef(EF_SEARCH)
    return lambda queries: index.knn_query(queries, k=K)[0]


LIBRARIES = {
    "faiss-cpu": faiss_index,
    "usearch": usearch_index,
    "hnswlib": hnswlib_index,
    # vectors stored as float16 inside the graph (half the memory)
    "usearch-f16": lambda data, threads: usearch_index(data, threads, dtype="f16"),
    "faiss-f16": lambda data, threads: faiss_index(data, threads, fp16=True),
}
MODULES = {
    "faiss-cpu": "faiss",
    "usearch": "usearch.index",
    "hnswlib": "hnswlib",
    "usearch-f16": "usearch.index",
    "faiss-f16": "faiss",
}


def measure(name: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, threads: int) -> dict:
    """One library's row, measured in a forked child: its resident-set growth is its index alone (no memory freed
    by an earlier library to reuse)."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(_measure, (name, data, queries, truth, threads))


def _measure(name: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, threads: int) -> dict:
    try:
        importlib.import_module(MODULES[name])
    except ImportError as error:
        return {"library": name, "error": f"not installed ({error.name})"}
    process = psutil.Process()
    before = process.memory_info().rss
    start = time.perf_counter()
    search = LIBRARIES[name](data, threads)
    build = time.perf_counter() - start
    memory = (process.memory_info().rss - before) / 2**20
    start = time.perf_counter()
    found = np.asarray(search(queries))
    query = time.perf_counter() - start
    recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))
    return {
        "library": name,
        "build_s": build,
        "query_ms": 1000 * query / len(queries),
        "recall@10": recall,
        "memory_mib": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--libraries", nargs="*", default=list(LIBRARIES))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = exact_top_k(data, queries, K)
    print(f"{args.n} x {args.dim} float32, {args.queries} queries, k={K}, threads={args.threads}")
    print(
        f"HNSW M={M} ef_construction={EF_CONSTRUCTION} ef_search={EF_SEARCH}; raw vectors {data.nbytes / 2**20:.0f} MiB"
    )
    print(f"{'library':<12} {'build s':>9} {'query ms':>9} {'recall@10':>10} {'memory MiB':>11}")
    for name in args.libraries:
        row = measure(name, data, queries, truth, args.threads)
        if "error" in row:
            print(f"{name:<12} {row['error']}")
            continue
        print(
            f"{name:<12} {row['build_s']:>9.1f} {row['query_ms']:>9.3f} {row['recall@10']:>10.3f} "
            f"{row['memory_mib']:>11.0f}"
        )


if __name__ == "__main__":
    main()
