"""Transfer-set curation from signals the pipeline already has: the teacher's confidence, the class balance of its
labels, and near-duplicate texts. Each function returns a keep mask over the transfer texts in shard order; the
label stage combines them (`label.near_duplicates`, `label.drop_uncertain`, `label.rebalance`) and the student
trains on the kept rows only.

Near-duplicates are found with MinHash LSH (`datasketch`) over word uni- and bigrams: exact duplicates are already
gone (the transfer filter), but a generator or a scraped pool repeats templates with a word changed, which weighs
one region of the input space many times over.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from gendistill.errors import ConfigError

_WORD = re.compile(r"\w+", re.UNICODE)


def entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy (nats) of softmax(logits) per row."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return -(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum(axis=1)


def drop_most_uncertain(logits: np.ndarray, fraction: float, keep: np.ndarray) -> np.ndarray:
    """`keep` with the `fraction` of its kept rows whose teacher entropy is highest dropped (ties: later rows go)."""
    kept = np.flatnonzero(keep)
    count = int(round(fraction * len(kept)))
    if count == 0:
        return keep
    order = np.lexsort((-kept, entropy(logits[kept])))  # ascending entropy; among equals, earlier rows first
    out = keep.copy()
    out[kept[order[len(kept) - count :]]] = False
    return out


def rebalance(labels: np.ndarray, max_ratio: float, keep: np.ndarray, seed: int) -> np.ndarray:
    """`keep` with each class (by the teacher's label) subsampled to at most `max_ratio` times the rarest class
    that has any kept row (a seeded random subset of it)."""
    kept_labels = labels[keep]
    present = np.unique(kept_labels)
    if len(present) < 2:
        return keep
    counts = {int(c): int((kept_labels == c).sum()) for c in present}
    cap = max(1, int(np.floor(max_ratio * min(counts.values()))))
    rng = np.random.default_rng(seed)
    out = keep.copy()
    for label, count in counts.items():
        if count > cap:
            rows = np.flatnonzero(keep & (labels == label))
            out[rng.choice(rows, size=count - cap, replace=False)] = False
    return out


def _shingles(text: str) -> set[bytes]:
    words = _WORD.findall(text.lower())
    grams = set(words) | {f"{a} {b}" for a, b in zip(words, words[1:], strict=False)}
    return {gram.encode("utf-8") for gram in grams}


def near_duplicate_keep(texts: Iterable[str], threshold: float, seed: int = 0, num_perm: int = 64) -> np.ndarray:
    """Keep mask: a text whose estimated Jaccard similarity (word uni- and bigrams) to an earlier kept text is at
    least `threshold` is dropped; the first of each group stays."""
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError:  # the optional `gendistill[curate]` extra
        raise ConfigError(
            "label.near_duplicates needs the datasketch package: pip install 'gendistill[curate]'"
        ) from None
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    keep = []
    for index, text in enumerate(texts):
        signature = MinHash(num_perm=num_perm, seed=seed)
        signature.update_batch(list(_shingles(text)) or [b""])
        duplicate = bool(lsh.query(signature))
        if not duplicate:
            lsh.insert(str(index), signature)
        keep.append(not duplicate)
    return np.asarray(keep, dtype=bool)
