"""Static token embeddings distilled from a transformer encoder (the model2vec recipe), for student init.

Each kept token is passed through the encoder alone (with the model's own special tokens around it), the
output states are mean-pooled, the matrix is reduced with PCA and rescaled, and optionally re-weighted by
SIF (a / (a + p(token))) so frequent function words carry less weight in pooled students.

We compute this by hand rather than with `model2vec.distill` because we only embed the few thousand tokens
the student keeps (not the teacher's whole vocabulary), can take the fine-tuned teacher as well as its base,
and know the real token frequencies of the task's texts instead of estimating them from vocabulary rank.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from sklearn.decomposition import PCA
from transformers import AutoModel, PreTrainedTokenizerBase


@torch.inference_mode()
def encode_tokens(
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    token_ids: list[int],
    device: str = "cpu",
    batch_size: int = 512,
    trust_remote_code: bool = False,
) -> np.ndarray:
    """Mean-pooled last hidden states of each token passed alone through the encoder: [len(token_ids), hidden]."""
    encoder = AutoModel.from_pretrained(model_path, trust_remote_code=trust_remote_code).to(device).eval()
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    prefix, suffix = ([first] if first is not None else []), ([last] if last is not None else [])
    rows = []
    for start in range(0, len(token_ids), batch_size):
        batch = [[*prefix, token, *suffix] for token in token_ids[start : start + batch_size]]
        ids = torch.tensor(batch, device=device)
        hidden = encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        rows.append(hidden.mean(dim=1).float().cpu().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, encoder.config.hidden_size), dtype=np.float32)


def reduce_and_weight(
    vectors: np.ndarray, dim: int, frequencies: np.ndarray | None, sif_coefficient: float | None, seed: int = 0
) -> np.ndarray:
    """PCA to `dim` (zero-padded if the encoder is narrower or there are fewer tokens than dims), rescaled to
    unit standard deviation, then SIF-weighted by relative frequency when a coefficient is given."""
    components = min(dim, vectors.shape[0], vectors.shape[1])
    if vectors.shape[0] < 2:  # PCA needs two points; a one-token vocabulary keeps its leading coordinates
        reduced = vectors[:, :components].astype(np.float64)
    else:
        reduced = PCA(n_components=components, random_state=seed).fit_transform(vectors.astype(np.float64))
    if components < dim:
        reduced = np.pad(reduced, ((0, 0), (0, dim - components)))
    reduced /= reduced.std() + 1e-12
    if sif_coefficient is not None and frequencies is not None:
        probability = frequencies / max(frequencies.sum(), 1)
        reduced *= (sif_coefficient / (sif_coefficient + probability))[:, None]
    return reduced.astype(np.float32)


def teacher_embedding_matrix(
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    kept_ids: list[int],
    counts: Counter[int],
    dim: int,
    sif_coefficient: float | None,
    device: str = "cpu",
    seed: int = 0,
    trust_remote_code: bool = False,
) -> np.ndarray:
    """The student's embedding matrix for rows [PAD, UNK, *kept_ids]: [PAD] is zero, [UNK] is the teacher's
    unknown token (or the mean of the kept tokens when the tokenizer has none)."""
    unk_id = tokenizer.unk_token_id
    token_ids = list(kept_ids) + ([unk_id] if unk_id is not None else [])
    vectors = encode_tokens(model_path, tokenizer, token_ids, device, trust_remote_code=trust_remote_code)
    if unk_id is None:
        vectors = np.concatenate([vectors, vectors.mean(axis=0, keepdims=True)])
    frequencies = np.asarray([counts.get(token, 0) for token in kept_ids] + [0], dtype=np.float64)
    reduced = reduce_and_weight(vectors, dim, frequencies, sif_coefficient, seed)
    matrix = np.zeros((len(kept_ids) + 2, dim), dtype=np.float32)
    matrix[1] = reduced[-1]
    matrix[2:] = reduced[:-1]
    return matrix
