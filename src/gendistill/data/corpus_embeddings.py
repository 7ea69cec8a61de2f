"""Embed a large unlabeled corpus once and keep the vectors on disk, for nearest-neighbour retrieval.

A corpus is streamed (never whole in memory) and embedded by an encoder (mean-pooled last hidden states of any
Hugging Face encoder folder: a fine-tuned or base teacher, a sentence-transformers folder). The unit vectors are
written, float16, into a memory-mapped file in a shared cache folder keyed by the corpus's content (the texts as
they would be embedded, whatever file or dataset they came from) and the encoder's identity (a hash of its
files), so a second run, or another run on the same corpus and encoder, embeds nothing. Embedding is resumable:
the rows done so far are recorded after every block, and an interrupted run continues from there.

Each block's texts are hashed too, and a block of texts that another corpus in the cache already embedded with the
same encoder is copied from that corpus's vectors instead of embedded again: a corpus that grew by appended rows
embeds only the new ones, and corpora that share a large part (the same off-task collection with different texts
after it) embed that part once. Blocks start every BLOCK_ROWS rows from the first, so what is shared is found
when it sits at the same block boundaries (a common prefix), not anywhere.

The vectors file is written and read with plain file I/O at row offsets, never memory-mapped: the dirty and the
touched pages of a mapping count in the process's resident memory, which would then grow with the corpus (768 MB
at 1M rows x 384 dimensions); pages written or read with write()/pread() stay in the kernel's page cache instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from filelock import FileLock

from gendistill import progress
from gendistill.data.tables import iter_unlabeled
from gendistill.io import texts_sha256, tree_sha256, write_json
from gendistill.training.checkpoint import kill_point

if TYPE_CHECKING:
    import torch

CACHE_ENV = "GENDISTILL_RETRIEVE_CACHE"
BLOCK_ROWS = 4096  # rows embedded between two progress records (and two kill points)
READ_ROWS = 8192  # rows read at a time when the vectors are streamed (indexing)


def default_cache_dir() -> Path:
    """$GENDISTILL_RETRIEVE_CACHE, else $XDG_CACHE_HOME/gendistill/retrieve (~/.cache/gendistill/retrieve)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gendistill" / "retrieve"


def corpus_texts(spec: str, text_column: str, max_chars: int) -> Iterator[list[str]]:
    """The corpus's rows in batches, each as it is embedded: truncated, whitespace-normalized, "" for a
    non-string or empty value (such a row keeps its position, gets a zero vector and is never retrieved)."""
    for values in iter_unlabeled(spec, text_column):
        yield [" ".join(value[:max_chars].split()) if isinstance(value, str) else "" for value in values]


def corpus_fingerprint(spec: str, text_column: str, max_chars: int) -> tuple[str, int]:
    """(sha256 of the rows as embedded, row count): one streaming pass, a second or so per million rows. The
    same texts in JSONL or Parquet share a fingerprint; an `hf:` dataset's revision is its content."""
    digest, rows = hashlib.sha256(), 0
    for batch in corpus_texts(spec, text_column, max_chars):
        for text in batch:
            digest.update(text.encode("utf-8"))
            digest.update(b"\0")
        rows += len(batch)
    return digest.hexdigest(), rows


def encoder_identity(name: str) -> str:
    """A hash of an encoder folder's files (weights, config, tokenizer); a Hub id is its own identity."""
    return tree_sha256(name) if Path(name).is_dir() else hashlib.sha256(name.encode()).hexdigest()


class TextEncoder:
    """Mean-pooled, L2-normalized last hidden states of a Hugging Face encoder. `calls` counts the batches it
    encoded (tests use it to see that a cached corpus is not embedded again)."""

    def __init__(self, name: str, *, device: torch.device | str, max_length: int, trust_remote_code: bool = False):
        import torch  # the encoder runs on torch; imported here so the data wing stays light to import
        from transformers import AutoModel, AutoTokenizer  # ~1.5 s to import: only a retrieve source pays for it

        from_pretrained_kwargs = {"trust_remote_code": trust_remote_code}
        self.tokenizer = AutoTokenizer.from_pretrained(name, **from_pretrained_kwargs)
        self.model = AutoModel.from_pretrained(name, **from_pretrained_kwargs).to(device).eval()
        self.device, self.max_length, self.calls = device, max_length, 0
        self._torch = torch

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def __call__(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # by length, so a batch pads to texts of its own size: on a corpus of mixed lengths this halves the
        # tokens through the model (sentence-transformers sorts the same way); the rows go back to their places
        positions = sorted((i for i, text in enumerate(texts) if text), key=lambda i: len(texts[i]))
        for start in range(0, len(positions), batch_size):
            chunk = positions[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in chunk],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
            out[chunk] = pooled.cpu().numpy()
            self.calls += 1
        return out


@dataclass(frozen=True)
class EmbeddingsFile:
    """A float16 [rows, dim] vectors file (row-major, no header), read by row offsets: `blocks` streams it
    through one reusable buffer, `take` reads only the rows asked for. Nothing is memory-mapped."""

    path: Path
    rows: int
    dim: int

    @property
    def row_bytes(self) -> int:
        return self.dim * 2

    def __len__(self) -> int:
        return self.rows

    def blocks(self, block_rows: int = READ_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float16 [<= block_rows, dim]) in order; the array is a view of a buffer reused by the
        next block (copy what must outlive it)."""
        buffer = np.empty((min(block_rows, max(self.rows, 1)), self.dim), dtype=np.float16)
        with open(self.path, "rb", buffering=0) as handle:
            for start in range(0, self.rows, block_rows):
                count = min(block_rows, self.rows - start)
                _read_into(handle.fileno(), buffer[:count], start * self.row_bytes)
                yield start, buffer[:count]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """float16 [len(rows), dim]: the vectors of `rows` (any order, repeats allowed), read run by run of
        consecutive rows."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        unique, inverse = np.unique(rows, return_inverse=True)
        out = np.empty((len(unique), self.dim), dtype=np.float16)
        if len(unique):
            breaks = np.flatnonzero(np.diff(unique) != 1) + 1
            starts = np.concatenate(([0], breaks))
            stops = np.concatenate((breaks, [len(unique)]))
            with open(self.path, "rb", buffering=0) as handle:
                for first, last in zip(starts.tolist(), stops.tolist(), strict=True):
                    _read_into(handle.fileno(), out[first:last], int(unique[first]) * self.row_bytes)
        return out[inverse]


def _read_into(fd: int, target: np.ndarray, offset: int) -> None:
    """Fill the contiguous array `target` with the file's bytes from `offset` (pread, short reads retried)."""
    view = memoryview(target.reshape(-1).view(np.uint8))
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise EOFError(f"embeddings file ends at byte {offset + done}, {len(view) - done} bytes short")
        done += got


@dataclass
class CorpusEmbeddings:
    """The corpus's vectors file (read by offsets, float16, unit rows; zero rows for empty texts), its cache
    folder, and how many rows this call embedded."""

    folder: Path
    file: EmbeddingsFile
    embedded_now: int  # rows this call filled in: encoded, or copied from another corpus's identical blocks
    reused: int  # rows this corpus's cache entry already had
    copied: int = 0  # of embedded_now, the rows copied from another corpus in the cache (not encoded)

    @property
    def rows(self) -> int:
        return self.file.rows


def embed_corpus(
    spec: str,
    text_column: str,
    *,
    max_chars: int,
    encoder_name: str,
    max_length: int,
    load_encoder: Callable[[], TextEncoder],
    cache_dir: Path,
    batch_size: int = 64,
) -> CorpusEmbeddings:
    """The corpus's embeddings from the cache, embedding (and recording) only the rows not done yet. The
    encoder is loaded only when something is left to embed. Runs sharing the cache take turns on one corpus
    (a file lock), so two never write the same vectors."""
    fingerprint, rows = corpus_fingerprint(spec, text_column, max_chars)
    embedder = hashlib.sha256(f"{encoder_identity(encoder_name)}/{max_chars}/{max_length}".encode()).hexdigest()
    folder = cache_dir / hashlib.sha256(f"{fingerprint}/{embedder}".encode()).hexdigest()[:24]
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        return _embed_missing(
            spec, text_column, max_chars, encoder_name, embedder, load_encoder, folder, rows, batch_size
        )


def _embed_missing(
    spec: str,
    text_column: str,
    max_chars: int,
    encoder_name: str,
    embedder: str,
    load_encoder: Callable[[], TextEncoder],
    folder: Path,
    rows: int,
    batch_size: int,
) -> CorpusEmbeddings:
    meta_path, data_path = folder / "meta.json", folder / "embeddings.f16"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    done = int(meta.get("done", 0)) if meta.get("rows") == rows and data_path.exists() else 0
    copied = 0
    if done < rows:
        encoder = load_encoder()
        size = max(rows, 1) * encoder.dim * 2
        if done == 0 or os.path.getsize(data_path) != size:
            done = 0
            with open(data_path, "wb") as handle:
                handle.truncate(size)  # sparse: the blocks fill it in
        blocks = [block for block in meta.get("blocks", []) if block[1] + block[2] <= done] if done else []
        meta = {
            "rows": rows,
            "dim": encoder.dim,
            "done": done,
            "corpus": spec,
            "encoder": encoder_name,
            "embedder": embedder,
            "blocks": blocks,  # [sha256 of the block's texts, first row, rows]: what another corpus may copy
        }
        known = _blocks_elsewhere(folder, embedder, encoder.dim)
        with open(data_path, "r+b", buffering=0) as handle:
            copied = _embed_rows(spec, text_column, max_chars, encoder, handle, meta, meta_path, batch_size, known)
    embeddings = EmbeddingsFile(data_path, rows, int(meta["dim"]))
    return CorpusEmbeddings(folder, embeddings, embedded_now=rows - done, reused=done, copied=copied)


def _blocks_elsewhere(folder: Path, embedder: str, dim: int) -> dict[str, tuple[EmbeddingsFile, int, int]]:
    """Block hash -> (vectors file, first row, rows) of that block in another cached corpus embedded by the same
    encoder. Only blocks that corpus recorded as done count: their vectors were made durable first."""
    known: dict[str, tuple[EmbeddingsFile, int, int]] = {}
    for other in sorted(folder.parent.glob("*/meta.json")):
        if other.parent == folder:
            continue
        try:
            meta = json.loads(other.read_text())
        except (OSError, ValueError):
            continue  # being written, or not ours: nothing to copy from it
        if meta.get("embedder") != embedder or meta.get("dim") != dim:
            continue
        file = EmbeddingsFile(other.parent / "embeddings.f16", int(meta["rows"]), dim)
        for digest, start, count in meta.get("blocks", []):
            if start + count <= meta.get("done", 0):
                known.setdefault(digest, (file, start, count))
    return known


def _all_filled(vectors: np.ndarray, texts: list[str]) -> bool:
    """Every non-empty text has a unit vector (an unwritten row of a sparse file reads as zeros)."""
    norms = np.linalg.norm(vectors.astype(np.float32), axis=1)
    return bool(np.all(norms[[i for i, text in enumerate(texts) if text]] > 0.5))


def _copy_block(known: dict[str, tuple[EmbeddingsFile, int, int]], digest: str, count: int) -> np.ndarray | None:
    """The block's float16 vectors read from another corpus's file, or None (not there, or gone since)."""
    if digest not in known:
        return None
    file, start, rows = known[digest]
    if rows != count:
        return None
    try:
        return file.take(np.arange(start, start + rows))
    except (OSError, EOFError):
        return None


def _embed_rows(
    spec: str,
    text_column: str,
    max_chars: int,
    encoder: TextEncoder,
    handle: BinaryIO,
    meta: dict,
    meta_path: Path,
    batch_size: int,
    known: dict[str, tuple[EmbeddingsFile, int, int]],
) -> int:
    """Embed rows `meta["done"]`.. in blocks: each block is written at its offset and made durable (fsync)
    before the count that includes it is recorded, so a kill at any point loses at most the block under way. A
    block another corpus already embedded (`known`) is copied. Returns the rows copied."""
    position, block, block_start, copied = 0, [], meta["done"], 0

    def flush() -> None:
        nonlocal block, block_start, copied
        digest = texts_sha256(block)
        vectors = _copy_block(known, digest, len(block))
        if vectors is not None and not _all_filled(vectors, block):
            vectors = None  # that file was rewritten since its record was read: embed rather than copy zeros
        if vectors is None:
            vectors = encoder(block, batch_size)
        else:
            copied += len(block)
        data = np.ascontiguousarray(vectors, dtype=np.float16).tobytes()
        handle.seek(block_start * encoder.dim * 2)
        view = memoryview(data)
        while view:
            view = view[handle.write(view) :]
        os.fsync(handle.fileno())
        meta["done"] = block_start + len(block)
        meta["blocks"].append([digest, block_start, len(block)])
        write_json(meta_path, meta)
        bar.advance(len(block))
        block_start += len(block)
        block = []
        kill_point("retrieve.embed")

    with progress.bar("retrieve: embedding the corpus", total=meta["rows"], completed=meta["done"]) as bar:
        for batch in corpus_texts(spec, text_column, max_chars):
            for text in batch:
                if position >= meta["done"]:
                    block.append(text)
                position += 1
                if len(block) == BLOCK_ROWS:
                    flush()
        if block:
            flush()
    write_json(meta_path, meta)
    return copied
