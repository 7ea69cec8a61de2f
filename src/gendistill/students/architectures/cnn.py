"""The CNN student (Kim 2014)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from gendistill.students.architectures.base import StudentNetwork, StudentSpec, masked_max, padding_mask


def default_kernel_sizes() -> list[int]:
    return [3, 4, 5]


@dataclass
class CNNSpec(StudentSpec):
    cnn_kernel_sizes: list[int] = field(default_factory=default_kernel_sizes)


class CNNStudent(StudentNetwork):
    """Parallel convolutions of several widths, max-pooled over valid windows, then a linear layer."""

    spec_class: ClassVar[type[StudentSpec]] = CNNSpec

    def __init__(self, spec: CNNSpec):
        super().__init__(spec)
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim, padding_idx=0)
        self.kernel_sizes = list(spec.cnn_kernel_sizes)
        self.convs = nn.ModuleList(
            nn.Conv1d(spec.embedding_dim, spec.hidden_dim, kernel_size=k) for k in self.kernel_sizes
        )
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(spec.hidden_dim * len(self.kernel_sizes), spec.num_labels)

    @classmethod
    def min_input_length(cls, spec: CNNSpec) -> int:
        """The widest filter: a shorter input has no window for it."""
        return max(spec.cnn_kernel_sizes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] < self.min_length:  # pad with [PAD] (zero embeddings): padding changes no window's max
            ids = nn.functional.pad(ids, (0, self.min_length - ids.shape[1]))
        embedded = self.dropout(self.embedding(ids)).transpose(1, 2)
        pooled = []
        for kernel, conv in zip(self.kernel_sizes, self.convs, strict=True):
            features = torch.relu(conv(embedded)).transpose(1, 2)  # [batch, windows, hidden]
            # a window is valid if it starts inside the text; a text shorter than the kernel keeps window 0
            valid = torch.clamp(lengths - kernel + 1, min=1)
            pooled.append(masked_max(features, padding_mask(valid, features.shape[1])))
        return self.classifier(self.dropout(torch.cat(pooled, dim=-1)))
