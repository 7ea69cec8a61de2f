"""The BiLSTM student (Tang et al. 2019), and its ONNX form: one bidirectional LSTM node."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from gendistill.students.architectures.base import (
    StudentNetwork,
    StudentSpec,
    masked_max,
    masked_mean,
    padding_mask,
)

POOLINGS = ("max", "mean_max")


@dataclass
class BiLSTMSpec(StudentSpec):
    pooling: str = "max"  # the readout: max over time, or mean and max side by side ("mean_max")


def reverse_valid(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first `length` steps in place of padding-aware flip (padding stays at the end)."""
    width = values.shape[1]
    positions = torch.arange(width, device=values.device)[None, :]
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return values.gather(1, index[:, :, None].expand(-1, -1, values.shape[2]))


class BiLSTMStudent(StudentNetwork):
    """Embeddings -> BiLSTM -> max-pool over time (or mean and max side by side) -> ReLU MLP -> logits.

    The backward direction runs a second LSTM over each text reversed within its own length, so padding never
    enters the recurrence (packed sequences would do the same but do not export to ONNX)."""

    spec_class: ClassVar[type[StudentSpec]] = BiLSTMSpec
    recurrent: ClassVar[bool] = True

    def __init__(self, spec: BiLSTMSpec):
        super().__init__(spec)
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim, padding_idx=0)
        self.forward_lstm = nn.LSTM(spec.embedding_dim, spec.hidden_dim, batch_first=True)
        self.backward_lstm = nn.LSTM(spec.embedding_dim, spec.hidden_dim, batch_first=True)
        self.dropout = nn.Dropout(spec.dropout)
        if spec.pooling not in POOLINGS:
            raise ValueError(f"unknown bilstm pooling {spec.pooling!r}; expected {' or '.join(POOLINGS)}")
        self.mean_too = spec.pooling == "mean_max"
        self.hidden = nn.Linear((4 if self.mean_too else 2) * spec.hidden_dim, spec.hidden_dim)
        self.classifier = nn.Linear(spec.hidden_dim, spec.num_labels)

    def recurrent_states(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[batch, length, 2 * hidden]: forward and backward states per position (padding positions: anything)."""
        forward_states, _ = self.forward_lstm(embedded)
        backward_states, _ = self.backward_lstm(reverse_valid(embedded, lengths))
        return torch.cat([forward_states, reverse_valid(backward_states, lengths)], dim=-1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states = self.recurrent_states(self.dropout(self.embedding(ids)), lengths)
        mask = padding_mask(lengths, ids.shape[1])
        pooled = masked_max(states, mask)
        if self.mean_too:
            pooled = torch.cat([pooled, masked_mean(states, mask, lengths)], dim=-1)
        return self.classifier(self.dropout(torch.relu(self.hidden(self.dropout(pooled)))))

    def onnx_form(self) -> nn.Module:
        """A copy that traces its two recurrences as one ONNX `LSTM` node (direction=bidirectional,
        sequence_lens = lengths).

        The node reverses each text within its own length, as the student does, and replaces the student's reversal
        gathers, two LSTMs and concatenation: measured on the quickstart int8 student, everything but the LSTM
        kernels took half of the graph's time. In torch the node computes the student's own `recurrent_states`, so
        the export's check compares the exported graph with the real student like any other export.
        """
        model = copy.deepcopy(self)
        directions = (model.forward_lstm, model.backward_lstm)
        hidden = model.forward_lstm.hidden_size

        class BidirectionalLSTMNode(torch.autograd.Function):
            @staticmethod
            def forward(ctx, embedded, lengths, weights, recurrences, biases):  # noqa: ARG004
                tracing = torch._C._get_tracing_state()  # the node is traced as one op; its inside must not be
                torch._C._set_tracing_state(None)
                try:
                    return BiLSTMStudent.recurrent_states(model, embedded, lengths)  # the class's, not the override
                finally:
                    torch._C._set_tracing_state(tracing)

            @staticmethod
            def symbolic(g, embedded, lengths, weights, recurrences, biases):
                time_major = g.op("Transpose", embedded, perm_i=[1, 0, 2])
                sequence_lens = g.op("Cast", lengths, to_i=6)  # int32, as the LSTM op requires
                states, _, _ = g.op(
                    "LSTM",
                    time_major,
                    weights,
                    recurrences,
                    biases,
                    sequence_lens,
                    direction_s="bidirectional",
                    hidden_size_i=hidden,
                    outputs=3,
                )  # [length, 2 directions, batch, hidden]
                batch_major = g.op("Transpose", states, perm_i=[2, 0, 1, 3])
                return g.op("Reshape", batch_major, g.op("Constant", value_t=torch.tensor([0, 0, -1])))

        def recurrent_states(embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            weights = torch.stack([_onnx_gates(lstm.weight_ih_l0) for lstm in directions])
            recurrences = torch.stack([_onnx_gates(lstm.weight_hh_l0) for lstm in directions])
            biases = torch.stack(
                [torch.cat([_onnx_gates(lstm.bias_ih_l0), _onnx_gates(lstm.bias_hh_l0)]) for lstm in directions]
            )
            return BidirectionalLSTMNode.apply(embedded, lengths, weights, recurrences, biases)

        model.recurrent_states = recurrent_states
        return model


def _onnx_gates(weight: torch.Tensor) -> torch.Tensor:
    """torch orders LSTM gates (input, forget, cell, output); ONNX wants (input, output, forget, cell)."""
    gate_input, forget, cell, output = weight.chunk(4, dim=0)
    return torch.cat([gate_input, output, forget, cell], dim=0)
