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

    def onnx_form(self) -> nn.Module:
        return _BagForOnnx(self)


class _BagForOnnx(nn.Module):
    """BagStudent's computation with the mean's sum taken as a running sum (CumSum) read at each text's last
    position: onnxruntime's ReduceSum (and MatMul) add the time steps in blocks whose shape follows the padded width,
    so a text's logits changed with the longest text of its batch (one text in 300 on ag_news-like input, 3e-8).
    A running sum adds them one after the other, so a text's sum is the same bits at any padding and batch."""

    def __init__(self, bag: BagStudent):
        super().__init__()
        self.bag = bag

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        bag = self.bag
        embedded = bag.embedding(ids)
        mask = padding_mask(lengths, ids.shape[1])
        running = torch.cumsum(embedded * mask[:, :, None].to(embedded.dtype), dim=1)
        last = (lengths.clamp(min=1) - 1)[:, None, None].expand(-1, 1, embedded.shape[2])
        mean = running.gather(1, last)[:, 0, :] / lengths[:, None].clamp(min=1).to(embedded.dtype)
        pooled = torch.cat([mean, masked_max(embedded, mask)], dim=-1)
        return bag.classifier(torch.relu(bag.hidden(pooled)))
