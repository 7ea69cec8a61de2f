"""Build a fresh, untrained student: its vocabulary (a word vocabulary learnt from the texts, or the teacher's
tokenizer pruned to them with static embeddings distilled from the teacher) and its network, from the config."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from gendistill.config import StudentConfig, UnseenTokens
from gendistill.students.architectures import ARCHITECTURES, StudentSpec
from gendistill.students.classifier import StudentClassifier
from gendistill.students.static import teacher_embedding_matrix, unseen_candidates
from gendistill.students.vocab import (
    UNK_ID,
    StudentTokenizer,
    prune_teacher_vocab,
    student_vocab_size,
    train_word_tokenizer,
)

# what the built vocabulary decides, not the config
_MEASURED_FIELDS = ("arch", "vocab_size", "num_labels")


@dataclass
class _Vocabulary:
    tokenizer: Tokenizer
    id_map: np.ndarray | None  # teacher id -> student row, for a pruned teacher vocabulary
    embeddings: np.ndarray | None  # the embedding table to start from (None: the network's random init)
    info: dict  # how the vocabulary was made, for the student's config.json


def make_student(
    config: StudentConfig,
    texts: Iterable[str],
    label_names: list[str],
    seed: int,
    *,
    teacher_dir: Path | None = None,
    teacher_base: str | None = None,
    device: str = "cpu",
    trust_remote_code: bool = False,
    allow_pickle_weights: bool = False,
) -> StudentClassifier:
    """A fresh student whose vocabulary covers `texts`: word-level with random embeddings, or the teacher's
    tokenizer pruned to the texts' tokens with static embeddings distilled from the teacher (`init: teacher`)."""
    torch.manual_seed(seed)
    if config.init == "random":
        vocabulary = _word_vocabulary(config, texts)
    elif teacher_dir is None:
        raise ValueError("init: teacher needs the fine-tuned teacher")
    else:
        vocabulary = _teacher_vocabulary(
            config,
            texts,
            teacher_dir,
            seed=seed,
            teacher_base=teacher_base,
            device=device,
            trust_remote_code=trust_remote_code,
            allow_pickle_weights=allow_pickle_weights,
        )
    spec = spec_from_config(
        config,
        vocab_size=student_vocab_size(vocabulary.tokenizer, vocabulary.id_map),
        num_labels=len(label_names),
    )
    min_length = ARCHITECTURES.get(spec.arch).min_input_length(spec)
    tokenizer = StudentTokenizer(vocabulary.tokenizer, config.max_length, vocabulary.id_map, min_length)
    student = StudentClassifier(spec, tokenizer, label_names, info={"init": config.init, **vocabulary.info})
    if vocabulary.embeddings is not None:
        with torch.no_grad():
            student.model.embedding.weight.copy_(torch.from_numpy(vocabulary.embeddings))
    return student


def spec_from_config(config: StudentConfig, *, vocab_size: int, num_labels: int) -> StudentSpec:
    """The spec of `config.arch`: each field it owns from the config's field of that name (a field the config
    lacks, such as a plugin architecture's own, keeps the spec's default)."""
    spec_class = ARCHITECTURES.get(config.arch).spec_class
    values = config.model_dump(mode="json")
    configured = {
        item.name: values[item.name]
        for item in fields(spec_class)
        if item.name not in _MEASURED_FIELDS and item.name in values
    }
    return spec_class(arch=config.arch, vocab_size=vocab_size, num_labels=num_labels, **configured)


def _word_vocabulary(config: StudentConfig, texts: Iterable[str]) -> _Vocabulary:
    """The texts' most frequent words, for a student whose embeddings start random."""
    return _Vocabulary(train_word_tokenizer(texts, config.vocab_size, config.min_frequency), None, None, {})


def _teacher_vocabulary(
    config: StudentConfig,
    texts: Iterable[str],
    teacher_dir: Path,
    *,
    seed: int,
    teacher_base: str | None,
    device: str,
    trust_remote_code: bool,
    allow_pickle_weights: bool = False,
) -> _Vocabulary:
    """The teacher's tokenizer pruned to the texts' tokens, and their static embeddings from the base encoder, the
    fine-tuned one (`init_from: finetuned`) or the encoder `init_from` names (then `teacher_dir` is that one)."""
    from transformers import AutoTokenizer  # transformers loads in ~1.5 s: imported on use, so the CLI starts fast

    hf_tokenizer = AutoTokenizer.from_pretrained(teacher_dir, trust_remote_code=trust_remote_code)
    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    id_map, kept, counts = prune_teacher_vocab(
        tokenizer, texts, config.max_length, config.vocab_size, hf_tokenizer.unk_token_id
    )
    source = str(teacher_dir) if config.init_from == "finetuned" or teacher_base is None else teacher_base
    unseen = unseen_candidates(hf_tokenizer, id_map, UNK_ID) if config.unseen_tokens == "nearest" else []
    embeddings, unseen_rows = teacher_embedding_matrix(
        source,
        hf_tokenizer,
        kept,
        counts,
        config.embedding_dim,
        config.sif_coefficient,
        device,
        seed,
        trust_remote_code,
        unseen_ids=unseen,
        allow_pickle_weights=allow_pickle_weights,
    )
    id_map[np.asarray(unseen, dtype=np.int64)] = unseen_rows
    info = {
        "init_from": config.init_from,
        "teacher_vocab_size": int(id_map.shape[0]),
        "pruned_vocab_size": len(kept) + 2,
        "unseen_tokens": UnseenTokens(config.unseen_tokens).value,
        "unseen_mapped": len(unseen),
    }
    return _Vocabulary(tokenizer, id_map, embeddings, info)
