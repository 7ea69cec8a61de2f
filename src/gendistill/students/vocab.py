"""Student tokenization: a word-level vocabulary learnt from the texts, or the teacher's tokenizer pruned.

Pruning keeps the teacher's tokenizer untouched and adds an id map (teacher id -> student row, unknown -> the
[UNK] row). This works for any tokenizer model (WordPiece, BPE, Unigram) and keeps the embedding matrix as
small as the texts require; the map is saved beside tokenizer.json and applied with numpy, so the torch-free
predictor uses it unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1


def train_word_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 1) -> Tokenizer:
    """A lowercasing word-level tokenizer ([PAD]=0, [UNK]=1) over the most frequent words of `texts`."""
    tokenizer = Tokenizer(WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK])
    tokenizer.train_from_iterator(iter(texts), trainer=trainer)
    return tokenizer


def teacher_token_ids(tokenizer: Tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """The teacher tokenizer's ids for each text, without special tokens, truncated to `max_length`."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    return [encoding.ids[:max_length] for encoding in encodings]


def prune_teacher_vocab(
    tokenizer: Tokenizer, texts: Iterable[str], max_length: int, vocab_size: int, unk_id: int | None
) -> tuple[np.ndarray, list[int], Counter[int]]:
    """Choose the teacher tokens the student keeps: those that occur in `texts`, most frequent first, capped at
    `vocab_size` rows (two of them [PAD] and [UNK]).

    Returns (id map of size teacher-vocab: teacher id -> student row; the kept teacher ids in row order from
    row 2 on; the token counts).
    """
    counts: Counter[int] = Counter()
    chunk: list[str] = []
    for text in texts:  # in chunks: `texts` may be a stream of millions
        chunk.append(text)
        if len(chunk) == 10_000:
            for ids in teacher_token_ids(tokenizer, chunk, max_length):
                counts.update(ids)
            chunk = []
    for ids in teacher_token_ids(tokenizer, chunk, max_length):
        counts.update(ids)
    if unk_id is not None:
        counts.pop(unk_id, None)
    kept = [token for token, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: vocab_size - 2]]
    teacher_vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    id_map = np.full(teacher_vocab, UNK_ID, dtype=np.int64)
    id_map[np.asarray(kept, dtype=np.int64)] = np.arange(2, len(kept) + 2)
    return id_map, kept, counts


def student_vocab_size(tokenizer: Tokenizer, id_map: np.ndarray | None) -> int:
    """The rows of the student's embedding table: the pruned teacher vocabulary's, or the word vocabulary's."""
    if id_map is not None:
        return int(id_map.max()) + 1
    return tokenizer.get_vocab_size(with_added_tokens=True)


class StudentTokenizer:
    """Turns texts into padded id matrices in the student's embedding space."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, id_map: np.ndarray | None = None, min_length: int = 1):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.id_map = id_map
        self.min_length = min_length

    @property
    def vocab_size(self) -> int:
        return student_vocab_size(self.tokenizer, self.id_map)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids [batch, length] padded with [PAD]=0, lengths [batch]); a text with no token gets one [UNK]."""
        sequences = teacher_token_ids(self.tokenizer, texts, self.max_length)
        if self.id_map is not None:
            sequences = [self.id_map[ids].tolist() if ids else ids for ids in sequences]
        sequences = [ids if ids else [UNK_ID] for ids in sequences]
        width = max(max(len(ids) for ids in sequences), self.min_length)
        matrix = np.zeros((len(sequences), width), dtype=np.int64)
        for row, ids in enumerate(sequences):
            matrix[row, : len(ids)] = ids
        lengths = np.asarray([len(ids) for ids in sequences], dtype=np.int64)
        return matrix, lengths
