"""The `generator` section: which causal LM to fine-tune on the labeled texts (or a small GPT-2 from scratch) and
how. Sampling settings belong to the `generate` source (sources/generate.py), so tuning them never retrains."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from gendistill.sections import Section, knob


def prefix_for(label_name: str | None) -> str:
    """The class-conditional prefix (label name and a colon), or nothing. One definition for fine-tuning and for
    the prompts, so a conditional generator is prompted with exactly the prefix it learnt to continue."""
    return f"{label_name}: " if label_name is not None else ""


class GeneratorConfig(Section):
    """The causal LM fine-tuned on the training texts and sampled to make the transfer set."""

    model: str = Field(
        default="scratch",
        description="Hugging Face causal LM id or path (e.g. gpt2), or 'scratch': a small GPT-2 trained from "
        "random init with a byte-level BPE tokenizer learnt from the texts (the air-gapped setting)",
    )
    conditional: bool = Field(default=False, description="prefix each text with its label name")
    epochs: Annotated[float, Field(gt=0)] | None = Field(default=None, description="default: 3, or 30 for scratch")
    learning_rate: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="default: 5e-5, or 1e-3 for scratch"
    )
    batch_size: Annotated[int, Field(ge=1)] = 8
    max_length: Annotated[int, Field(ge=8)] = 128
    # a 'scratch' model's size (its position table holds max_length + scratch_extra_positions tokens)
    scratch_extra_positions: Annotated[int, Field(ge=0)] = 80
    scratch_layers: Annotated[int, Field(ge=1)] = 4
    scratch_dim: Annotated[int, Field(ge=16)] = 256
    scratch_heads: Annotated[int, Field(ge=1)] = 4
    scratch_vocab_size: Annotated[int, Field(ge=300)] = 4000
    trust_remote_code: bool = False
    # a knob: it decides whether a file may be read, not what is trained (no generator key changes with it)
    allow_pickle_weights: bool = knob(
        False, description="also load pytorch_model.bin (pickle) weights of generator.model; default: safetensors only"
    )

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> GeneratorConfig:
        if self.scratch_dim % self.scratch_heads:
            raise ValueError(f"scratch_dim ({self.scratch_dim}) must be divisible by scratch_heads")
        return self
