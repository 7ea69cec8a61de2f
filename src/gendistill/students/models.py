"""The tiny student networks: BiLSTM (Tang et al. 2019), CNN (Kim 2014) and a bag of embeddings (fastText class).

All take right-padded ids [batch, length] and lengths [batch] and return logits. Each is exact under padding:
a text's logits do not depend on how long the other texts in its batch are, which keeps batched inference,
ONNX export and single-text prediction in agreement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class StudentSpec:
    """Everything needed to rebuild a student network (saved as config.json)."""

    arch: str
    vocab_size: int
    num_labels: int
    embedding_dim: int = 64
    hidden_dim: int = 128
    dropout: float = 0.2
    cnn_kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    pooling: str = "max"  # bilstm readout: "max" or "mean_max"

    def to_dict(self) -> dict:
        return asdict(self)


def _mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def _masked_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values.masked_fill(~mask[:, :, None], torch.finfo(values.dtype).min).amax(dim=1)


def _reverse_valid(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first `length` steps in place of padding-aware flip (padding stays at the end)."""
    width = values.shape[1]
    positions = torch.arange(width, device=values.device)[None, :]
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return values.gather(1, index[:, :, None].expand(-1, -1, values.shape[2]))


ARCHITECTURES: dict[str, type[nn.Module]] = {}


def register_architecture(name: str):
    """Class decorator: make a student network available as `student.arch: NAME` (config, distill, export)."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in ARCHITECTURES:
            raise RuntimeError(f"student architecture {name!r} is registered twice")
        ARCHITECTURES[name] = cls
        return cls

    return add


@register_architecture("bilstm")
class BiLSTMStudent(nn.Module):
    """Embeddings -> BiLSTM -> max-pool over time (or mean and max side by side) -> ReLU MLP -> logits.

    The backward direction runs a second LSTM over each text reversed within its own length, so padding never
    enters the recurrence (packed sequences would do the same but do not export to ONNX)."""

    def __init__(self, spec: StudentSpec):
        super().__init__()
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim, padding_idx=0)
        self.forward_lstm = nn.LSTM(spec.embedding_dim, spec.hidden_dim, batch_first=True)
        self.backward_lstm = nn.LSTM(spec.embedding_dim, spec.hidden_dim, batch_first=True)
        self.dropout = nn.Dropout(spec.dropout)
        if spec.pooling not in ("max", "mean_max"):
            raise ValueError(f"unknown bilstm pooling {spec.pooling!r}; expected max or mean_max")
        self.mean_too = spec.pooling == "mean_max"
        self.hidden = nn.Linear((4 if self.mean_too else 2) * spec.hidden_dim, spec.hidden_dim)
        self.classifier = nn.Linear(spec.hidden_dim, spec.num_labels)

    def recurrent_states(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[batch, length, 2 * hidden]: forward and backward states per position (padding positions: anything)."""
        forward_states, _ = self.forward_lstm(embedded)
        backward_states, _ = self.backward_lstm(_reverse_valid(embedded, lengths))
        return torch.cat([forward_states, _reverse_valid(backward_states, lengths)], dim=-1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states = self.recurrent_states(self.dropout(self.embedding(ids)), lengths)
        mask = _mask(lengths, ids.shape[1])
        pooled = _masked_max(states, mask)
        if self.mean_too:
            mean = (states * mask[:, :, None]).sum(dim=1) / lengths[:, None].clamp(min=1).to(states.dtype)
            pooled = torch.cat([pooled, mean], dim=-1)
        return self.classifier(self.dropout(torch.relu(self.hidden(self.dropout(pooled)))))


@register_architecture("cnn")
class CNNStudent(nn.Module):
    """Kim (2014): parallel convolutions of several widths, max-pooled over valid windows, then a linear layer."""

    def __init__(self, spec: StudentSpec):
        super().__init__()
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim, padding_idx=0)
        self.kernel_sizes = list(spec.cnn_kernel_sizes)
        self.convs = nn.ModuleList(
            nn.Conv1d(spec.embedding_dim, spec.hidden_dim, kernel_size=k) for k in self.kernel_sizes
        )
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(spec.hidden_dim * len(self.kernel_sizes), spec.num_labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        widest = max(self.kernel_sizes)
        if ids.shape[1] < widest:  # too short for the widest filter: pad with [PAD] (zero embeddings)
            ids = nn.functional.pad(ids, (0, widest - ids.shape[1]))
        embedded = self.dropout(self.embedding(ids)).transpose(1, 2)
        pooled = []
        for kernel, conv in zip(self.kernel_sizes, self.convs, strict=True):
            features = torch.relu(conv(embedded)).transpose(1, 2)  # [batch, windows, hidden]
            # a window is valid if it starts inside the text; a text shorter than the kernel keeps window 0
            valid = torch.clamp(lengths - kernel + 1, min=1)
            pooled.append(_masked_max(features, _mask(valid, features.shape[1])))
        return self.classifier(self.dropout(torch.cat(pooled, dim=-1)))


@register_architecture("bag")
class BagStudent(nn.Module):
    """Mean- and max-pooled token embeddings -> ReLU MLP: the fastest student (fastText/model2vec class)."""

    def __init__(self, spec: StudentSpec):
        super().__init__()
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(spec.dropout)
        self.hidden = nn.Linear(2 * spec.embedding_dim, spec.hidden_dim)
        self.classifier = nn.Linear(spec.hidden_dim, spec.num_labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(ids)
        mask = _mask(lengths, ids.shape[1])
        mean = (embedded * mask[:, :, None]).sum(dim=1) / lengths[:, None].clamp(min=1).to(embedded.dtype)
        pooled = torch.cat([mean, _masked_max(embedded, mask)], dim=-1)
        return self.classifier(self.dropout(torch.relu(self.hidden(self.dropout(pooled)))))


def build_student(spec: StudentSpec) -> nn.Module:
    return ARCHITECTURES[spec.arch](spec)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
