"""Tiny, offline fixtures: a three-class text task, a random-init BERT teacher and GPT-2 generator built from
configs, with tokenizers trained on the fixture texts. Nothing here touches the network."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["GENDISTILL_PROGRESS"] = "0"

TOPICS = {
    "sports": ["match", "goal", "team", "coach", "league", "season", "player", "score"],
    "weather": ["rain", "storm", "sunny", "cloud", "wind", "forecast", "snow", "heat"],
    "cooking": ["recipe", "oven", "flour", "sauce", "garlic", "bake", "pasta", "spice"],
}
FILLER = ["the", "a", "today", "really", "was", "very", "and", "then", "we", "saw", "new", "big"]


def make_text(rng: random.Random, topic: str) -> str:
    words = rng.sample(TOPICS[topic], 3) + rng.sample(FILLER, 4)
    rng.shuffle(words)
    return " ".join(words)


def make_rows(n_per_class: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = [{"text": make_text(rng, topic), "label": topic} for topic in TOPICS for _ in range(n_per_class)]
    rng.shuffle(rows)
    return rows


LABELS = sorted(TOPICS)  # ["cooking", "sports", "weather"]: label ids as the students see them


def labeled(n_per_class: int, seed: int) -> tuple[list[str], list[int]]:
    rows = make_rows(n_per_class, seed)
    return [r["text"] for r in rows], [LABELS.index(r["label"]) for r in rows]


def train_tiny_student(arch: str, init: str, teacher_dir: Path, **overrides):
    """(student, training stats): the tiny recipe that reliably learns the fixture task (>= 80% on its test rows),
    so tests on trained students do not look at near-tied logits. Runs on one torch thread: tiny batches only spin
    extra threads, badly so on a busy machine."""
    import torch

    from gendistill.config import StudentConfig
    from gendistill.runtime import make_accelerator
    from gendistill.students.building import make_student
    from gendistill.students.examples import InMemoryExamples
    from gendistill.students.trainer import train_student

    texts, gold = labeled(20, 0)
    settings = {"embedding_dim": 16, "hidden_dim": 16, "epochs": 15, "batch_size": 8, "learning_rate": 5e-3}
    config = StudentConfig(arch=arch, init=init, **{**settings, "cnn_kernel_sizes": [2, 3], **overrides})
    student = make_student(config, texts, LABELS, seed=0, teacher_dir=teacher_dir, teacher_base=str(teacher_dir))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        examples = InMemoryExamples.from_texts(student, texts, gold)
        stats = train_student(student, examples, config, make_accelerator("cpu", "no", 0), seed=0)
    finally:
        torch.set_num_threads(threads)
    return student, stats


def cli_env(kill_at: str | None = None) -> dict[str, str]:
    """Environment for the real CLI in a subprocess: offline, quiet, a checkpoint every epoch, and optionally a
    kill point (see gendistill.training.checkpoint.kill_point)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GENDISTILL_PROGRESS": "0", "GENDISTILL_CHECKPOINT_SECONDS": "0"}
    env.pop("GENDISTILL_KILL_AT", None)
    if kill_at:
        env["GENDISTILL_KILL_AT"] = kill_at
    return env


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory) -> Path:
    """train (20/class), test (10/class) and unlabeled (60) JSONL files with string labels."""
    root = tmp_path_factory.mktemp("task")
    write_jsonl(root / "train.jsonl", make_rows(20, 0))
    write_jsonl(root / "test.jsonl", make_rows(10, 1))
    write_jsonl(root / "unlabeled.jsonl", [{"text": row["text"]} for row in make_rows(20, 2)])
    return root


def all_fixture_texts() -> list[str]:
    return [row["text"] for seed in range(3) for row in make_rows(20, seed)]


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory) -> Path:
    """A random-init 2-layer BERT (hidden 32) with a WordPiece vocabulary built from the fixture texts: every
    word whole, and every letter alone and as a ##continuation (so an unseen word of those letters is spelled out).
    Built, not trained: the tokenizers trainer breaks ties between equally frequent merges in a different order in
    each process, which gave each test session another vocabulary, other token ids, and test scores that moved
    between runs (a multi-label teacher test read micro-F1 1.0 in one run and 0.79 in the next)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny_bert")
    words = sorted({word for text in all_fixture_texts() for word in text.lower().split()})
    letters = sorted({letter for word in words for letter in word})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{letter}" for letter in letters)]
    vocab += [word for word in words if word not in letters]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast.from_pretrained(root)
    tokenizer.save_pretrained(root)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    """A random-init 2-layer GPT-2 with a byte-level BPE tokenizer: the 'pretrained generator' code path."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from gendistill.generation.causal_lm import train_bpe_tokenizer

    root = tmp_path_factory.mktemp("tiny_gpt2")
    tokenizer = train_bpe_tokenizer(all_fixture_texts(), 400)
    tokenizer.save_pretrained(root)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(root)
    return root


def make_tiny_config(task_dir: Path, teacher_dir: Path) -> dict:
    """A whole-pipeline config on tiny models that runs in seconds."""
    return {
        "data": {"train": str(task_dir / "train.jsonl"), "test": str(task_dir / "test.jsonl")},
        "teacher": {"model": str(teacher_dir), "epochs": 3, "batch_size": 16, "learning_rate": 1e-3, "max_length": 32},
        "generator": {
            "model": "scratch",
            "epochs": 2,
            "scratch_layers": 1,
            "scratch_dim": 32,
            "scratch_heads": 2,
            "scratch_vocab_size": 300,
            "max_length": 32,
        },
        "transfer": {
            "sources": [{"type": "generate", "n": 40, "max_new_tokens": 12, "batch_size": 16}],
            "shard_size": 16,
            "filters": {"min_words": 1},
        },
        "student": {
            "arch": "bilstm",
            "init": "teacher",
            "embedding_dim": 16,
            "hidden_dim": 16,
            "epochs": 2,
            "batch_size": 16,
        },
        "evaluate": {"speed_examples": 32, "speed_min_seconds": 0},  # tiny models: one round of texts per pass
        "device": "cpu",
    }


CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_chat_lm_dir(tmp_path_factory) -> Path:
    """A random-init 2-layer GPT-2 saved with a chat template and a sampling generation config: what
    `transformers serve` needs to answer chat and completion requests (the answers are noise, the protocol real)."""
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    from gendistill.generation.causal_lm import train_bpe_tokenizer

    root = tmp_path_factory.mktemp("tiny_chat_lm")
    tokenizer = train_bpe_tokenizer([*all_fixture_texts(), "1. 2. 3. user: assistant: Text: Class:"], 400)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(root)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=1024,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        do_sample=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def served_lm(tiny_chat_lm_dir, tmp_path_factory) -> str:
    """`transformers serve` answering for the tiny chat LM on 127.0.0.1 for the whole session: its base URL."""
    from llm_servers import transformers_serve

    log = tmp_path_factory.mktemp("transformers_serve") / "serve.log"
    with transformers_serve(tiny_chat_lm_dir, log) as url:
        yield url
