"""A nearest-neighbour index over a corpus's cached embeddings, built once and kept beside them.

The library is faiss (faiss-cpu, the `retrieve` extra). It was chosen over usearch and hnswlib by
benchmarks/retrieval_index.py (100k random 384-d unit vectors, HNSW M=32, one thread): faiss built fastest,
queried as fast as any, took the least memory with float16 codes, had the best recall by a hair, and is the most
used and maintained of the three, with wheels for every platform (hnswlib needs a C++ compiler to install).

The index itself is IVF-PQ with an exact re-rank, not the HNSW graph first used: a graph over float16 codes holds
every vector plus its links in memory (about 1 GB at 1M x 384), so the process grew with the corpus. Now:
- under IVF_MIN_ROWS rows (where training an IVF means little): an exact flat index (IndexFlatIP);
- from there: IndexIVFPQ (L2, which ranks unit vectors as inner product does), nlist = 4 sqrt(N) clamped to what
  a bounded training sample (TRAIN_ROWS rows drawn from the vectors file) can train at 39 rows a list, PQ with one
  8-bit code per 8 dimensions (48 bytes a vector at 384-d: 56 MB with its ids at 1M rows). It is trained on the
  sample and filled block by block from the file (plain reads into one buffer), so building never holds the
  corpus. A search probes NPROBE lists, takes RERANK x k candidates (at least RERANK_MIN) and orders them by
  their EXACT inner product with the query, read from the float16 vectors file (only the candidate rows): the
  answer is exact search's whenever exact search's top k is among the candidates.

Recall of that search against exact search, 100,000 384-d rows (nlist 840, 48 PQ codes, nprobe 128, 512
candidates), 1,000 queries, one thread (benchmarks/retrieval_recall.py, results/retrieval/recall.json):

    vectors                                                  recall@10  recall@50  build s  query ms
    all-MiniLM-L6-v2 on real texts (intents, emotions, UN        0.985      0.960      8.0       2.4
      debates), queries: held-out intent/emotion test texts
    clustered Gaussian, 1,000 centres                            1.000      1.000      7.2       2.4
    tiny random-init BERT on word salad (no structure)           0.691      0.535      7.7       2.2
    uniform random unit vectors (no structure: the floor)        0.361      0.319      7.7       2.8

Recall is what real embeddings, which cluster, get; vectors without near neighbours (the last two rows: the tiny
BERT's 1st and 50th nearest scores differ by 0.005) are hard for any ANN index (HNSW had recall@10 0.175 on the random
ones). Memory: embed + index + query peaked at 843 MB RSS at 100k rows, 871 MB at 1M (results/retrieval/scale.json).

The index file's name carries its kind and format version (`index-ivfpq-v1.faiss`, `index-flat-v1.faiss`): an
index of another kind or version in the folder (the HNSW `index.faiss` of earlier releases) is never read, and
is deleted when the new one is saved.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from filelock import FileLock

from gendistill import progress
from gendistill.errors import MissingExtra
from gendistill.io import atomic_path

INSTALL_HINT = "the retrieve source needs faiss: pip install 'gendistill[retrieve]'"
FORMAT_VERSION = 1
IVF_MIN_ROWS = 50_000  # below this, an exact flat index
TRAIN_ROWS = 32_768  # rows sampled to train the coarse quantizer and the PQ codebooks (float32 copy: 48 MiB at 384-d)
ROWS_PER_LIST = 39  # training rows per IVF list at least (faiss's own floor)
PQ_BITS, PQ_DIMS = 8, 8  # one 8-bit code per PQ_DIMS dimensions (the closest divisor of the dimension)
NPROBE = 128  # IVF lists searched per query
RERANK, RERANK_MIN = 8, 512  # candidates re-ranked exactly: max(RERANK x k, RERANK_MIN)
ADD_ROWS = 8_192  # rows read from the file and handed to the index at a time
QUERY_ROWS = 16  # queries searched (and re-ranked) at a time: bounds the candidate rows read at once


def require_faiss() -> Any:
    """The faiss module, or a one-line MissingExtra naming the pip extra."""
    try:
        import faiss  # optional (the `retrieve` extra): only the retrieve source needs it
    except ModuleNotFoundError:
        raise MissingExtra(INSTALL_HINT) from None
    return faiss


class Rows(Protocol):
    """Row-addressable float vectors: gendistill.data.corpus_embeddings.EmbeddingsFile, or an array."""

    rows: int
    dim: int

    def blocks(self, block_rows: int) -> Iterator[tuple[int, np.ndarray]]: ...

    def take(self, rows: np.ndarray) -> np.ndarray: ...


class ArrayRows:
    """An in-memory [rows, dim] array as Rows."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.rows, self.dim = array.shape

    def blocks(self, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.rows, block_rows):
            yield start, self.array[start : start + block_rows]

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.array[np.asarray(rows, dtype=np.int64)]


def index_kind(rows: int) -> str:
    return "ivfpq" if rows >= max(IVF_MIN_ROWS, 1 << PQ_BITS) else "flat"


def index_file(rows: int) -> str:
    return f"index-{index_kind(rows)}-v{FORMAT_VERSION}.faiss"


def ivf_lists(rows: int) -> int:
    """4 sqrt(rows), at most what the training sample trains at ROWS_PER_LIST rows a list."""
    return max(1, min(int(4 * math.sqrt(rows)), min(rows, TRAIN_ROWS) // ROWS_PER_LIST))


def pq_subquantizers(dim: int) -> int:
    """The number of PQ codes a vector gets: the divisor of `dim` closest to dim / PQ_DIMS."""
    return min((m for m in range(1, dim + 1) if dim % m == 0), key=lambda m: (abs(dim / m - PQ_DIMS), m))


def _float32(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the block's non-zero rows as float32, their positions in the block): zero rows are empty texts."""
    block = np.asarray(block, dtype=np.float32)
    keep = np.flatnonzero(np.abs(block).sum(axis=1) > 0)
    return np.ascontiguousarray(block[keep]), keep


class CorpusIndex:
    """Inner product over unit vectors (cosine similarity); ids are corpus row numbers."""

    def __init__(self, index: Any, faiss: Any, vectors: Rows):
        self._index, self._faiss, self._vectors = index, faiss, vectors
        self.kind = "ivfpq" if isinstance(faiss.downcast_index(index), faiss.IndexIVF) else "flat"

    @classmethod
    def build_or_load(
        cls, vectors: Rows | np.ndarray, folder: Path, *, threads: int | None = None
    ) -> tuple[CorpusIndex, bool]:
        """(the index of `vectors`, whether it was reused): read from `folder/index-KIND-vN.faiss` when a
        finished one is there, else built (empty rows, zero vectors, are left out) and saved atomically.
        `vectors`: an EmbeddingsFile (read in blocks, and by candidate rows when searching) or an array.
        `threads`: faiss's OpenMP threads (default: its own, OMP_NUM_THREADS or every core)."""
        faiss = require_faiss()
        rows = vectors if not isinstance(vectors, np.ndarray) else ArrayRows(vectors)
        if threads:
            faiss.omp_set_num_threads(threads)
        with FileLock(str(folder / ".lock")):  # runs sharing the cache build one index, the others reuse it
            path = folder / index_file(rows.rows)
            if path.exists():
                index = faiss.read_index(str(path))
                if index.d == rows.dim and index.ntotal <= rows.rows:
                    return cls(index, faiss, rows), True
            index = _build_ivfpq(faiss, rows) if index_kind(rows.rows) == "ivfpq" else _build_flat(faiss, rows)
            with atomic_path(path) as tmp:
                faiss.write_index(index, str(tmp))
            for stale in folder.glob("index*.faiss"):
                if stale != path:
                    stale.unlink(missing_ok=True)
            return cls(index, faiss, rows), False

    def search(self, queries: np.ndarray, k: int) -> list[list[int]]:
        """For each query, the row numbers of its `k` nearest rows, nearest first (fewer if the index is small)."""
        if self._index.ntotal == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self._index.ntotal)
        if self.kind == "flat":
            _, ids = self._index.search(queries, k)
            return [[int(i) for i in row if i >= 0] for row in ids]
        self._faiss.extract_index_ivf(self._index).nprobe = NPROBE
        wanted = min(max(RERANK * k, RERANK_MIN), self._index.ntotal)
        found: list[list[int]] = []
        for start in range(0, len(queries), QUERY_ROWS):
            chunk = queries[start : start + QUERY_ROWS]
            _, candidates = self._index.search(chunk, wanted)
            unique, inverse = np.unique(candidates[candidates >= 0], return_inverse=True)
            vectors = self._vectors.take(unique).astype(np.float32)
            position = np.full(candidates.shape, -1, dtype=np.int64)
            position[candidates >= 0] = inverse
            for query, rows, where in zip(chunk, candidates, position, strict=True):
                rows, where = rows[rows >= 0], where[where >= 0]
                scores = vectors[where] @ query
                order = np.lexsort((rows, -scores))[:k]  # best first; ties: the lower row
                found.append([int(row) for row in rows[order]])
        return found


def _build_flat(faiss: Any, rows: Rows) -> Any:
    index = faiss.IndexIDMap(faiss.IndexFlatIP(rows.dim))
    _add(index, rows)
    return index


def _build_ivfpq(faiss: Any, rows: Rows) -> Any:
    nlist, m = ivf_lists(rows.rows), pq_subquantizers(rows.dim)
    # L2 on unit vectors ranks as inner product does, and faiss's IVF-PQ approximates it better (PQ codes of
    # residuals are trained for L2): at the same nprobe and candidates, 3x the recall of METRIC_INNER_PRODUCT on
    # the tiny encoder's vectors. The re-rank scores the candidates by inner product.
    index = faiss.IndexIVFPQ(faiss.IndexFlatL2(rows.dim), rows.dim, nlist, m, PQ_BITS, faiss.METRIC_L2)
    sample = np.sort(np.random.default_rng(0).choice(rows.rows, min(rows.rows, TRAIN_ROWS), replace=False))
    train, _ = _float32(rows.take(sample))
    del sample
    progress.step(f"retrieve: training the index ({len(train):,} sampled rows, {nlist} lists, {m} PQ codes)")
    index.train(train)
    del train
    _add(index, rows)
    return index


def _add(index: Any, rows: Rows) -> None:
    with progress.bar("retrieve: indexing the corpus", total=rows.rows) as bar:
        for start, block in rows.blocks(ADD_ROWS):
            vectors, keep = _float32(block)
            if len(keep):
                index.add_with_ids(vectors, (keep + start).astype(np.int64))
            bar.advance(len(block))
