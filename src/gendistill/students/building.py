"""Build a fresh, untrained student: its vocabulary (a word vocabulary learnt from the texts, or the teacher's
tokenizer pruned to them with static embeddings distilled from the teacher) and its network, from the config."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from gendistill.config import StudentConfig, UnseenTokens
from gendistill.io import chunked
from gendistill.students.architectures import ARCHITECTURES, StudentSpec
from gendistill.students.classifier import StudentClassifier
from gendistill.students.static import teacher_embedding_matrix, unseen_candidates
from gendistill.students.vocab import (
    UNK_ID,
    StudentTokenizer,
    prune_teacher_vocab,
    student_vocab_size,
    teacher_token_ids,
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


def grow_student(
    previous: StudentClassifier, config: StudentConfig, texts: Iterable[str], **make: Any
) -> StudentClassifier:
    """A student whose vocabulary covers `texts` and that starts from `previous`'s weights: every layer as it was,
    and each token `previous` had a row for keeps that row. A token new to the vocabulary starts as `make_student`
    starts it (its static teacher embedding, or random). So a round's student continues from the last one instead
    of starting over, and still reads the words only the new texts contain."""
    student = make_student(config, texts, previous.label_names, **make)
    owned = None
    if student.tokenizer.id_map is not None:  # the teacher tokens the texts contain: each has a row of its own
        seen: set[int] = set()
        for batch in chunked(texts, 4096):
            for ids in teacher_token_ids(student.tokenizer.tokenizer, batch, config.max_length):
                seen.update(ids)
        owned = np.fromiter(sorted(seen), dtype=np.int64)
    carry_weights(previous, student, owned)
    student.info.update({key: value for key, value in previous.info.items() if key not in student.info})
    return student


def carry_weights(old: StudentClassifier, new: StudentClassifier, owned: np.ndarray | None = None) -> None:
    """Copy `old`'s network into `new` (the same architecture over a grown vocabulary), embedding rows matched by
    token (`owned`: see `shared_rows`)."""
    old_state, new_state = old.model.state_dict(), new.model.state_dict()
    for name, value in new_state.items():
        if name == "embedding.weight":
            continue
        if name not in old_state or old_state[name].shape != value.shape:
            raise ValueError(f"cannot continue from the previous student: its {name} does not match the new network")
        value.copy_(old_state[name])
    old_rows, new_rows = shared_rows(old.tokenizer, new.tokenizer, owned)
    new_state["embedding.weight"][torch.from_numpy(new_rows)] = old_state["embedding.weight"][
        torch.from_numpy(old_rows)
    ]
    new.model.load_state_dict(new_state)


def shared_rows(
    old: StudentTokenizer, new: StudentTokenizer, owned: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(old rows, new rows) of the tokens both vocabularies have a row for, [PAD] and [UNK] included. A pruned
    teacher vocabulary matches by teacher token id, over the ids `owned` by a row of the new vocabulary (the
    tokens of its texts; an unseen id only borrows its nearest token's row): each such row takes the old row its
    token read, its own or the nearest one it borrowed, so every text reads as before. A word vocabulary matches
    by word."""
    if (old.id_map is None) != (new.id_map is None):
        raise ValueError("cannot continue from the previous student: one vocabulary is pruned, the other is not")
    if old.id_map is not None and new.id_map is not None:
        if len(old.id_map) != len(new.id_map):
            raise ValueError("cannot continue from the previous student: its teacher tokenizer differs")
        ids = np.arange(len(new.id_map)) if owned is None else owned[owned < len(new.id_map)]
        ids = ids[(old.id_map[ids] > UNK_ID) & (new.id_map[ids] > UNK_ID)]
        new_rows, first = np.unique(new.id_map[ids], return_index=True)  # a row twice (no `owned`): its first id
        old_rows = old.id_map[ids][first]
    else:
        old_vocab, new_vocab = old.tokenizer.get_vocab(), new.tokenizer.get_vocab()
        common = sorted(set(old_vocab) & set(new_vocab))
        old_rows = np.asarray([old_vocab[word] for word in common], dtype=np.int64)
        new_rows = np.asarray([new_vocab[word] for word in common], dtype=np.int64)
        keep = (old_rows > UNK_ID) & (new_rows > UNK_ID)
        old_rows, new_rows = old_rows[keep], new_rows[keep]
    special = np.arange(UNK_ID + 1, dtype=np.int64)
    return np.concatenate([special, old_rows]).astype(np.int64), np.concatenate([special, new_rows]).astype(np.int64)
