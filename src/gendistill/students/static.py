"""Static token embeddings distilled from a transformer encoder (the model2vec recipe), for student init.

Each kept token is passed through the encoder alone (with the model's own special tokens around it), the
output states are mean-pooled, the matrix is reduced with PCA and rescaled, and optionally re-weighted by
SIF (a / (a + p(token))) so frequent function words carry less weight in pooled students.

We compute this by hand rather than with `model2vec.distill` because we only embed the few thousand tokens
the student keeps (not the teacher's whole vocabulary), can take the fine-tuned teacher as well as its base,
and know the real token frequencies of the task's texts instead of estimating them from vocabulary rank.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from gendistill.loading import from_pretrained

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# (encoder folder or id, its weights' size and mtime) -> {token id: vector}: the distilled and the baseline student
# of one run embed mostly the same tokens with the same encoder (with `unseen_tokens: nearest`, the whole
# vocabulary), so the second pays nothing; a retrained encoder at the same path has another mtime, another entry
_TOKEN_VECTORS: dict[tuple, dict[int, np.ndarray]] = {}


def _encoder_identity(model_path: str) -> tuple:
    files = sorted(Path(model_path).glob("*.safetensors")) if Path(model_path).is_dir() else []
    return (str(model_path), *((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@torch.inference_mode()
def encode_tokens(
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    token_ids: list[int],
    device: str = "cpu",
    batch_size: int = 512,
    trust_remote_code: bool = False,
    allow_pickle_weights: bool = False,
) -> np.ndarray:
    """Mean-pooled last hidden states of each token passed alone through the encoder: [len(token_ids), hidden].
    Tokens this process already encoded with the same encoder weights are taken from memory. Pickle weights
    (pytorch_model.bin) are loaded only with `allow_pickle_weights`: unpickling runs code."""
    cache = _TOKEN_VECTORS.setdefault(_encoder_identity(model_path), {})
    missing = list(dict.fromkeys(token for token in token_ids if token not in cache))
    if missing or not token_ids:
        from transformers import AutoModel  # transformers loads in ~1.5 s: imported on use, so the CLI starts fast

        safetensors_only = None if allow_pickle_weights else True
        encoder = from_pretrained(
            AutoModel.from_pretrained,
            model_path,
            "student encoder",
            trust_remote_code=trust_remote_code,
            use_safetensors=safetensors_only,
        )
        encoder = encoder.to(device).eval()
        first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        prefix, suffix = ([first] if first is not None else []), ([last] if last is not None else [])
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            ids = torch.tensor([[*prefix, token, *suffix] for token in chunk], device=device)
            hidden = encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            cache.update(zip(chunk, hidden.mean(dim=1).float().cpu().numpy(), strict=True))
        if not token_ids:
            return np.zeros((0, encoder.config.hidden_size), dtype=np.float32)
    return np.stack([cache[token] for token in token_ids])


def reduce_and_weight(
    vectors: np.ndarray, dim: int, frequencies: np.ndarray | None, sif_coefficient: float | None, seed: int = 0
) -> np.ndarray:
    """PCA to `dim` (zero-padded if the encoder is narrower or there are fewer tokens than dims), rescaled to
    unit standard deviation, then SIF-weighted by relative frequency when a coefficient is given."""
    from sklearn.decomposition import PCA  # scikit-learn loads in ~0.7 s: imported on use, so the CLI starts fast

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


def unseen_candidates(tokenizer: PreTrainedTokenizerBase, id_map: np.ndarray, unk_row: int) -> list[int]:
    """Teacher tokens the pruned vocabulary maps to [UNK] that a text can produce: not special, not reserved
    (`[unused12]`, `<extra_id_3>`), not already kept."""
    special = set(tokenizer.all_special_ids)
    reserved = re.compile(r"^(\[.*\]|<.*>)$")
    vocabulary = tokenizer.convert_ids_to_tokens(list(range(len(id_map))))
    return [
        token
        for token, (row, text) in enumerate(zip(id_map, vocabulary, strict=True))
        if row == unk_row and token not in special and text is not None and not reserved.match(text)
    ]


def nearest_rows(kept: np.ndarray, unseen: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each unseen vector, the index of the kept vector with the highest cosine similarity, both centred on
    the kept vectors' mean first: every token's vector shares the [CLS]/[SEP] component, which would otherwise
    make all of them look alike."""
    centre = kept.mean(axis=0, keepdims=True)
    kept, unseen = kept - centre, unseen - centre
    kept = kept / (np.linalg.norm(kept, axis=1, keepdims=True) + 1e-12)
    rows = []
    for start in range(0, len(unseen), chunk):
        block = unseen[start : start + chunk]
        block = block / (np.linalg.norm(block, axis=1, keepdims=True) + 1e-12)
        rows.append((block @ kept.T).argmax(axis=1))
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


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
    unseen_ids: list[int] | None = None,
    allow_pickle_weights: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The student's embedding matrix for rows [PAD, UNK, *kept_ids]: [PAD] is zero, [UNK] is the teacher's
    unknown token (or the mean of the kept tokens when the tokenizer has none). Also returns, for each of
    `unseen_ids` (teacher tokens no training text contains), the row of the kept token nearest to it in the
    teacher's own (unreduced) static embeddings: mapping a word the student never trained on to its closest
    trained neighbour, instead of [UNK], keeps what the teacher knows about it without adding a row."""
    unk_id = tokenizer.unk_token_id
    unseen_ids = list(unseen_ids or [])
    token_ids = list(kept_ids) + ([unk_id] if unk_id is not None else [])
    vectors = encode_tokens(
        model_path,
        tokenizer,
        token_ids + unseen_ids,
        device,
        trust_remote_code=trust_remote_code,
        allow_pickle_weights=allow_pickle_weights,
    )
    vectors, unseen_vectors = vectors[: len(token_ids)], vectors[len(token_ids) :]
    unseen_rows = nearest_rows(vectors[: len(kept_ids)], unseen_vectors) + 2 if kept_ids else np.zeros(0, np.int64)
    if unk_id is None:
        vectors = np.concatenate([vectors, vectors.mean(axis=0, keepdims=True)])
    frequencies = np.asarray([counts.get(token, 0) for token in kept_ids] + [0], dtype=np.float64)
    reduced = reduce_and_weight(vectors, dim, frequencies, sif_coefficient, seed)
    matrix = np.zeros((len(kept_ids) + 2, dim), dtype=np.float32)
    matrix[1] = reduced[-1]
    matrix[2:] = reduced[:-1]
    return matrix, unseen_rows.astype(np.int64)
