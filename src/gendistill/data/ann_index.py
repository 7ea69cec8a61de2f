"""An approximate nearest-neighbour index over a corpus's cached embeddings, built once and kept beside them.

The library is usearch (the `retrieve` extra). benchmarks/retrieval_index.py measured faiss-cpu, usearch and
hnswlib on 100k random 384-d vectors (HNSW, M=32, ef 128/64, one thread): the three are alike in recall@10 and
query time, and usearch builds fastest of the graph indexes here; what decides is what the others lack: usearch
stores the vectors in float16 inside the graph (half the memory of faiss' IndexHNSWFlat and hnswlib, which keep
float32), saves one file and serves it memory-mapped from disk (`view`), so a corpus of millions is searched
without loading its index; and it is one small self-contained wheel (no BLAS, no OpenMP runtime), on every
platform with prebuilt wheels, where hnswlib needs a C++ compiler to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from gendistill import progress
from gendistill.errors import MissingExtra

INSTALL_HINT = "the retrieve source needs usearch: pip install 'gendistill[retrieve]'"
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 32, 128, 64
ADD_ROWS = 16_384  # vectors handed to the index at a time (float16 -> float32 copies stay small)


def require_usearch() -> Any:
    """The usearch.index module, or a one-line MissingExtra naming the pip extra."""
    try:
        from usearch import index  # optional (the `retrieve` extra): only the retrieve source needs it
    except ModuleNotFoundError:
        raise MissingExtra(INSTALL_HINT) from None
    return index


class CorpusIndex:
    """Inner-product HNSW over unit vectors (cosine similarity); keys are corpus row numbers."""

    def __init__(self, index: Any):
        self._index = index

    @classmethod
    def build_or_load(cls, vectors: np.ndarray, folder: Path, *, threads: int = 1) -> tuple[CorpusIndex, bool]:
        """(the index of `vectors`, whether it was reused): memory-mapped from `folder/index.usearch` when a
        finished one is there, else built (empty rows, zero vectors, are left out) and saved atomically."""
        usearch = require_usearch()
        with FileLock(str(folder / ".lock")):  # runs sharing the cache build one index, the others reuse it
            return cls._build_or_load(usearch, vectors, folder / "index.usearch", threads)

    @classmethod
    def _build_or_load(cls, usearch: Any, vectors: np.ndarray, path: Path, threads: int) -> tuple[CorpusIndex, bool]:
        if path.exists():
            return cls(usearch.Index.restore(str(path), view=True)), True
        index = usearch.Index(
            ndim=vectors.shape[1],
            metric="ip",
            dtype="f16",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )
        with progress.bar("retrieve: indexing the corpus", total=len(vectors)) as bar:
            for start in range(0, len(vectors), ADD_ROWS):
                block = np.asarray(vectors[start : start + ADD_ROWS], dtype=np.float32)
                keep = np.flatnonzero(np.abs(block).sum(axis=1) > 0)
                if len(keep):
                    index.add(keep + start, block[keep], threads=threads)
                bar.advance(len(block))
        tmp = path.with_suffix(".tmp")
        index.save(str(tmp))
        tmp.replace(path)
        return cls(index), False

    def search(self, queries: np.ndarray, k: int, *, threads: int = 1) -> list[list[int]]:
        """For each query, the row numbers of its `k` nearest rows, nearest first (fewer if the index is small)."""
        if len(self._index) == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        self._index.expansion_search = max(EXPANSION_SEARCH, 2 * k)  # the graph walk keeps at least 2k candidates
        matches = self._index.search(np.asarray(queries, dtype=np.float32), min(k, len(self._index)), threads=threads)
        keys, counts = np.atleast_2d(matches.keys), np.atleast_1d(matches.counts)
        return [keys[row, : counts[row]].tolist() for row in range(len(queries))]
