"""Training examples of a student on disk, memory-mapped: token ids (flat int32 with offsets), teacher logits
(float32 [n, labels]) and gold labels (int32, -1 for transfer texts; in a multi-label task a 0/1 row per text,
[n, labels], all -1 for a transfer text).

Built chunk by chunk from an iterator of (texts, logits, gold), so peak memory depends on the chunk size, not on
the size of the transfer set; training reads rows by index (random access for the shuffled DataLoader), and the
operating system pages in what it needs. Hand-written rather than `datasets.Dataset.from_generator` because the
rows are ragged int32 sequences plus a float matrix read thousands of times per second by index: three flat
numpy memmaps are the smallest and fastest structure for that, with no Arrow conversion per row.

meta.json, written last, records each file's sha256. The store is derived data (of the label files), so a damaged
one (a truncated or edited file, a malformed meta.json) is rebuilt with one warning instead of being memory-mapped
into wrong examples or a traceback.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from gendistill import progress
from gendistill.io import file_sha256, write_json

# texts, teacher logits (or None), gold labels (an id, -1 for none; in a multi-label task a list of ids or -1)
Chunk = tuple[list[str], np.ndarray | None, list]
FILES = ("ids", "offsets", "logits", "gold")


class ExampleStore:
    """A read-only, index-addressable view of examples written by `ExampleStore.build`."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        meta = json.loads((self.directory / "meta.json").read_text(encoding="utf-8"))
        self.size, self.num_labels, self.has_logits = meta["size"], meta["num_labels"], meta["has_logits"]
        self.multi_label = bool(meta.get("multi_label", False))
        self.ids = _memmap(self.directory / "ids.bin", np.int32, (meta["tokens"],))
        self.offsets = _memmap(self.directory / "offsets.bin", np.int64, (self.size + 1,))
        self.logits = _memmap(self.directory / "logits.bin", np.float32, (self.size, self.num_labels))
        self.gold = _memmap(self.directory / "gold.bin", np.int32, _gold_shape(self.size, self.num_labels, meta))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[list[int], np.ndarray, int | np.ndarray]:
        start, end = self.offsets[index], self.offsets[index + 1]
        gold = np.asarray(self.gold[index]) if self.multi_label else int(self.gold[index])
        return self.ids[start:end].tolist(), np.asarray(self.logits[index]), gold

    @classmethod
    def build(
        cls,
        directory: str | Path,
        chunks: Iterable[Chunk],
        encode: Any,
        num_labels: int,
        *,
        multi_label: bool = False,
    ) -> ExampleStore:
        """Tokenize every chunk with `encode(texts) -> (ids matrix, lengths)` and append it; an existing complete
        store in `directory` is reused (meta.json is written last). In a `multi_label` store each gold entry (a
        list of label ids, or -1 for a transfer text) is written as a 0/1 row (all -1 for a transfer text)."""
        directory = Path(directory)
        if (directory / "meta.json").exists():
            damage = _damage(directory)
            if damage is None:
                return cls(directory)
            path, why = damage
            progress.warning(f"example store file {path} is damaged ({why}): rebuilding the store (it is derived data)")
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        size = tokens = 0
        has_logits = True
        files = {name: open(directory / f"{name}.bin", "wb") for name in FILES}  # noqa: SIM115
        try:
            files["offsets"].write(np.zeros(1, np.int64).tobytes())
            for texts, logits, gold in chunks:
                if not texts:
                    continue
                matrix, lengths = encode(texts)
                mask = np.arange(matrix.shape[1])[None, :] < lengths[:, None]
                files["ids"].write(matrix[mask].astype(np.int32).tobytes())
                files["offsets"].write((tokens + np.cumsum(lengths)).astype(np.int64).tobytes())
                if logits is None:
                    has_logits = False
                    logits = np.zeros((len(texts), num_labels), np.float32)
                files["logits"].write(np.ascontiguousarray(logits, dtype=np.float32).tobytes())
                gold_rows = multi_hot_rows(gold, num_labels) if multi_label else np.asarray(gold, dtype=np.int32)
                files["gold"].write(gold_rows.tobytes())
                size, tokens = size + len(texts), tokens + int(lengths.sum())
        finally:
            for handle in files.values():
                handle.close()
        write_json(
            directory / "meta.json",
            {
                "size": size,
                "tokens": tokens,
                "num_labels": num_labels,
                "has_logits": has_logits,
                **({"multi_label": True} if multi_label else {}),
                "sha256": {f"{name}.bin": file_sha256(directory / f"{name}.bin") for name in FILES},
            },
        )
        return cls(directory)


def _damage(directory: Path) -> tuple[Path, str] | None:
    """What is wrong with a store that has its meta.json (the file, why), or None when every file has the size
    and checksum meta.json records (a store written before checksums: the sizes only)."""
    meta_path = directory / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        size, tokens, width = int(meta["size"]), int(meta["tokens"]), int(meta["num_labels"])
        checksums = dict(meta.get("sha256", {}))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        return meta_path, f"{type(error).__name__}: {str(error)[:80]}"
    gold = int(np.prod(_gold_shape(size, width, meta)))
    sizes = {"ids": tokens * 4, "offsets": (size + 1) * 8, "logits": size * width * 4, "gold": gold * 4}
    for name, expected in sizes.items():
        path = directory / f"{name}.bin"
        if not path.is_file():
            return path, "missing"
        if path.stat().st_size != expected:
            return path, f"{path.stat().st_size} bytes, meta.json implies {expected}"
        if path.name in checksums and file_sha256(path) != checksums[path.name]:
            return path, "its sha256 differs from the one meta.json recorded"
    return None


def _gold_shape(size: int, num_labels: int, meta: dict) -> tuple[int, ...]:
    return (size, num_labels) if meta.get("multi_label") else (size,)


def multi_hot_rows(gold: list, num_labels: int) -> np.ndarray:
    """Gold entries of a multi-label chunk as int32 rows: 0/1 for a list of label ids, all -1 for -1 (no gold)."""
    rows = np.zeros((len(gold), num_labels), dtype=np.int32)
    for row, labels in enumerate(gold):
        if isinstance(labels, (int, np.integer)):
            if labels != -1:
                raise ValueError(f"a multi-label gold entry is a list of label ids or -1, not {labels!r}")
            rows[row] = -1
        else:
            rows[row, list(labels)] = 1
    return rows


def _memmap(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)
