"""A student's training examples: an index-addressable sequence of (token ids, teacher logits, gold label), in
memory (`InMemoryExamples`) or memory-mapped on disk (`students.example_store.ExampleStore`). The student trainer
reads either the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gendistill.students.example_store import multi_hot_rows

if TYPE_CHECKING:
    from gendistill.students.classifier import StudentClassifier

# token ids (no padding), teacher logits (zeros where there is no teacher), gold label (-1: none, a transfer text)
Example = tuple[list[int], np.ndarray, int]


class Examples(Protocol):
    """What the trainer needs: random access by index, a length, and whether the logits are a teacher's (distill
    on them) or placeholders (train on gold labels with cross-entropy)."""

    has_logits: bool

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Example: ...


@dataclass
class InMemoryExamples:
    """Examples held in a list: the labeled texts of a cross-validation fold, or any set small enough."""

    rows: list[Example]
    has_logits: bool

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Example:
        return self.rows[index]

    @classmethod
    def from_texts(
        cls,
        student: StudentClassifier,
        texts: list[str],
        gold: Sequence[int],
        teacher_logits: np.ndarray | None = None,
    ) -> InMemoryExamples:
        """`texts` tokenized by the student, with their gold labels and the teacher's logits (if any)."""
        ids, lengths = student.tokenizer.encode(texts)
        sequences = [row[:length].tolist() for row, length in zip(ids, lengths, strict=True)]
        targets = (
            teacher_logits
            if teacher_logits is not None
            else np.zeros((len(texts), student.spec.num_labels), np.float32)
        )
        if student.multi_label:  # label-id lists (or -1) as 0/1 rows (all -1), as the example store keeps them
            gold = list(multi_hot_rows(list(gold), student.spec.num_labels))
        rows = list(zip(sequences, targets.astype(np.float32), gold, strict=True))
        return cls(rows, has_logits=teacher_logits is not None)


@dataclass
class ExampleSubset:
    """The rows `indices` of `examples`, in that order: a fold of a transfer set, without copying it."""

    examples: Examples
    indices: list[int]

    @property
    def has_logits(self) -> bool:
        return self.examples.has_logits

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Example:
        return self.examples[self.indices[index]]
