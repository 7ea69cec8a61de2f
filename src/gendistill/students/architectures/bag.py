"""The bag-of-embeddings student (fastText/model2vec class): the fastest one."""

from __future__ import annotations

import torch
from torch import nn

from gendistill.students.architectures.base import (
    StudentNetwork,
    StudentSpec,
    masked_max,
    masked_mean,
    padding_mask,
)


class BagStudent(StudentNetwork):
    """Mean- and max-pooled token embeddings -> ReLU MLP -> logits."""

    def __init__(self, spec: StudentSpec):
        super().__init__(spec)
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(spec.dropout)
        self.hidden = nn.Linear(2 * spec.embedding_dim, spec.hidden_dim)
        self.classifier = nn.Linear(spec.hidden_dim, spec.num_labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(ids)
        mask = padding_mask(lengths, ids.shape[1])
        pooled = torch.cat([masked_mean(embedded, mask, lengths), masked_max(embedded, mask)], dim=-1)
        return self.classifier(self.dropout(torch.relu(self.hidden(self.dropout(pooled)))))
