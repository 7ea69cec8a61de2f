"""What every student architecture is: a spec (the fields it is built from, with their defaults) and a network
from right-padded ids to logits that knows its own minimum input length, optimizer groups and ONNX form.

The trainer, the export and the inference code reach an architecture only through `StudentNetwork`, never by its
name or class, so a new architecture is one module plus its line in `students/architectures/__init__.py` (or one
`ARCHITECTURES.register(name)` call from anywhere).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class StudentSpec:
    """The fields every student is built from (saved as config.json's `spec`). These defaults are the config's
    (`student.embedding_dim`, ...): gendistill.config reads them from here. An architecture with fields of its
    own subclasses this spec."""

    arch: str
    vocab_size: int
    num_labels: int
    embedding_dim: int = 64
    hidden_dim: int = 96
    dropout: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StudentNetwork(nn.Module):
    """A student architecture: `forward(ids [batch, length] right-padded with [PAD]=0, lengths [batch])` -> logits.

    A network must be exact under padding (a text's logits do not depend on how long the other texts in its
    batch are: batched inference, ONNX export and single-text prediction agree) and keep its token embeddings in
    `embedding` (an `nn.Embedding` with padding_idx 0), where a teacher-initialized student's static embeddings
    are copied."""

    spec_class: ClassVar[type[StudentSpec]] = StudentSpec
    # A recurrent graph pays per time step: inference runs it in small length-sorted groups (export metadata).
    recurrent: ClassVar[bool] = False
    embedding: nn.Embedding

    def __init__(self, spec: StudentSpec):
        super().__init__()
        if not isinstance(spec, self.spec_class):
            raise TypeError(
                f"a {spec.arch} student is built from a {self.spec_class.__name__}, not a {type(spec).__name__} "
                "(students.architectures.spec_from_dict builds the right one from a dict)"
            )
        self.min_length = self.min_input_length(spec)

    @classmethod
    def min_input_length(cls, spec: StudentSpec) -> int:
        """The fewest columns an input needs; shorter inputs are padded with [PAD] up to it (by the tokenizer, by
        the exported graph, and by a network that needs it in its own forward)."""
        return 1

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups: by default one, every parameter in creation order."""
        return [{"params": list(self.parameters())}]

    def onnx_form(self) -> nn.Module:
        """The module to trace into ONNX, computing what this network computes; by default the network itself."""
        return self


def padding_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """[batch, width] True on each text's own positions."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def masked_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of [batch, length, features] where `mask` is True."""
    return values.masked_fill(~mask[:, :, None], torch.finfo(values.dtype).min).amax(dim=1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over time of [batch, length, features] where `mask` is True (a zero length counts as one)."""
    return (values * mask[:, :, None]).sum(dim=1) / lengths[:, None].clamp(min=1).to(values.dtype)
