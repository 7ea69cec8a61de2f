"""An approximate nearest-neighbour index over a corpus's cached embeddings, built once and kept beside them.

The library is faiss (faiss-cpu, the `retrieve` extra), an HNSW graph over float16 codes (IndexHNSWSQ, fp16).
benchmarks/retrieval_index.py, 100k random 384-d unit vectors, HNSW M=32, ef_construction 128, ef_search 64,
1000 top-10 queries, one thread (2 shared cores):

    library      build s  query ms  recall@10  memory MiB
    faiss-cpu      121.2     0.641      0.172         176
    usearch        373.7     1.690      0.168         186
    hnswlib        152.3     0.570      0.166         187
    usearch-f16    130.2     0.693      0.164         113
    faiss-f16      106.1     0.640      0.175         103

Recall is alike (random vectors are the worst case for any graph; real embeddings cluster), so it came down to
cost: faiss-f16 built fastest, queried as fast as any, and took the least memory (float16 codes, half of
float32's), with the best recall by a hair. faiss is also the most used and maintained of the three, ships
wheels for every platform (hnswlib needs a C++ compiler to install), and reads a saved index memory-mapped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from gendistill import progress
from gendistill.errors import MissingExtra

INSTALL_HINT = "the retrieve source needs faiss: pip install 'gendistill[retrieve]'"
CONNECTIVITY, EF_CONSTRUCTION, EF_SEARCH = 32, 128, 64
ADD_ROWS = 16_384  # vectors handed to the index at a time (float16 -> float32 copies stay small)
INDEX_FILE = "index.faiss"


def require_faiss() -> Any:
    """The faiss module, or a one-line MissingExtra naming the pip extra."""
    try:
        import faiss  # optional (the `retrieve` extra): only the retrieve source needs it
    except ModuleNotFoundError:
        raise MissingExtra(INSTALL_HINT) from None
    return faiss


class CorpusIndex:
    """Inner-product HNSW over unit vectors (cosine similarity); ids are corpus row numbers."""

    def __init__(self, index: Any, faiss: Any):
        self._index, self._faiss = index, faiss

    @classmethod
    def build_or_load(
        cls, vectors: np.ndarray, folder: Path, *, threads: int | None = None
    ) -> tuple[CorpusIndex, bool]:
        """(the index of `vectors`, whether it was reused): read (memory-mapped) from `folder/index.faiss` when a
        finished one is there, else built (empty rows, zero vectors, are left out) and saved atomically. `threads`:
        faiss's OpenMP threads (default: its own, OMP_NUM_THREADS or every core)."""
        faiss = require_faiss()
        if threads:
            faiss.omp_set_num_threads(threads)
        with FileLock(str(folder / ".lock")):  # runs sharing the cache build one index, the others reuse it
            path = folder / INDEX_FILE
            if path.exists():
                return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP), faiss), True
            graph = faiss.IndexHNSWSQ(
                vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, CONNECTIVITY, faiss.METRIC_INNER_PRODUCT
            )
            graph.hnsw.efConstruction = EF_CONSTRUCTION
            index = faiss.IndexIDMap(graph)
            with progress.bar("retrieve: indexing the corpus", total=len(vectors)) as bar:
                for start in range(0, len(vectors), ADD_ROWS):
                    block = np.asarray(vectors[start : start + ADD_ROWS], dtype=np.float32)
                    keep = np.flatnonzero(np.abs(block).sum(axis=1) > 0)
                    if len(keep):
                        index.add_with_ids(np.ascontiguousarray(block[keep]), (keep + start).astype(np.int64))
                    bar.advance(len(block))
            tmp = path.with_suffix(".tmp")
            faiss.write_index(index, str(tmp))
            tmp.replace(path)
            return cls(index, faiss), False

    def search(self, queries: np.ndarray, k: int) -> list[list[int]]:
        """For each query, the row numbers of its `k` nearest rows, nearest first (fewer if the index is small)."""
        if self._index.ntotal == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        self._faiss.downcast_index(self._index.index).hnsw.efSearch = max(EF_SEARCH, 2 * k)  # >= 2k candidates
        k = min(k, self._index.ntotal)
        _, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return [[int(i) for i in row if i >= 0] for row in ids]
