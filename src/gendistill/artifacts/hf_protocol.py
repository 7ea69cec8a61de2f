"""The Hugging Face text-classification protocol, so that clients written for Hugging Face servers can call
`gendistill serve` unchanged. Two shapes, both `{"inputs": ...}` requests answered with `{"label", "score"}` lists
sorted by score, highest first:

- `POST /predict` as Text Embeddings Inference serves a classifier: `inputs` is one text (answer: a list of
  {label, score}) or a batch (answer: one such list per text); `raw_scores: true` gives logits instead of
  probabilities; `truncate` is accepted and changes nothing (inputs are always truncated to the student's
  max_length tokens). TEI reads `["a", "b"]` as one text *pair*; a student classifies single texts, so here a list
  of strings is a batch (as in the Hub's text-classification task spec) and a pair (`[["a", "b"]]`) is refused.
  TEI's batch form `[["a"], ["b"]]` is read as a batch.
- `POST /` as the Hub's Inference API, which `huggingface_hub.InferenceClient(base_url=URL).text_classification`
  calls: `{"inputs": str | [str], "parameters": {"top_k", "function_to_apply"}}`, always answered with one list per
  text (the client takes the first).

Pure request parsing and answer shaping: the server (artifacts.serve) owns transport, limits and errors.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr

Transform = Literal["softmax", "sigmoid", "none"]


class TEIRequest(BaseModel):
    """Text Embeddings Inference's /predict body (its unknown fields are ignored, as TEI does)."""

    inputs: StrictStr | list[StrictStr | list[StrictStr]] = Field(description="a text, or a batch of texts")
    truncate: StrictBool = False
    raw_scores: StrictBool = False


class HubParameters(BaseModel):
    top_k: StrictInt | None = Field(default=None, ge=1, description="only the k highest-scoring labels")
    function_to_apply: Transform | None = Field(default=None, description="softmax (default), sigmoid or none")


class HubRequest(BaseModel):
    """The Hub Inference API's text-classification body (`POST /`)."""

    inputs: StrictStr | list[StrictStr] = Field(description="a text, or a batch of texts")
    parameters: HubParameters | None = None


class PairError(ValueError):
    """A TEI text pair: the student classifies one text at a time."""


def tei_texts(request: TEIRequest) -> tuple[list[str], bool]:
    """(the texts, whether the request was one text). A batch item may be a string or TEI's one-string list."""
    if isinstance(request.inputs, str):
        return [request.inputs], True
    texts = []
    for index, item in enumerate(request.inputs):
        if isinstance(item, list):
            if len(item) != 1:
                raise PairError(
                    f"inputs.{index}: a list of {len(item)} strings; this classifier takes single texts, not pairs "
                    '(send ["text", ...] or [["text"], ...])'
                )
            item = item[0]
        texts.append(item)
    return texts, False


def hub_texts(request: HubRequest) -> list[str]:
    return [request.inputs] if isinstance(request.inputs, str) else list(request.inputs)


def scores(logits: np.ndarray, transform: Transform) -> np.ndarray:
    """[texts, labels] scores from logits: softmax probabilities, per-label sigmoids, or the logits themselves."""
    logits = np.asarray(logits, dtype=np.float64)
    if transform == "none":
        return logits
    if transform == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def ranked(rows: np.ndarray, labels: list[str], top_k: int | None = None) -> list[list[dict[str, Any]]]:
    """One `[{"label", "score"}, ...]` list per text, highest score first (ties keep label order), cut to top_k."""
    answer = []
    for row in rows:
        order = sorted(range(len(labels)), key=lambda i: -row[i])[:top_k]
        answer.append([{"label": labels[i], "score": float(row[i])} for i in order])
    return answer
