"""The teacher: fine-tune any Hugging Face sequence classifier on the labeled data, then soft-label texts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    get_linear_schedule_with_warmup,
)

from gendistill.config import TeacherConfig
from gendistill.data import LabeledSet
from gendistill.hub import from_pretrained
from gendistill.training import fit, save_pretrained_atomic


def load_teacher(
    path: str, num_labels: int | None = None, label_names: list[str] | None = None, trust_remote_code: bool = False
):
    """(model, tokenizer); with `num_labels`, a fresh classification head sized for the task."""
    tokenizer = from_pretrained(
        AutoTokenizer.from_pretrained, path, "teacher tokenizer", trust_remote_code=trust_remote_code
    )
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if num_labels is not None:
        names = label_names or [str(i) for i in range(num_labels)]
        kwargs.update(
            num_labels=num_labels,
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            ignore_mismatched_sizes=True,
        )
    model = from_pretrained(AutoModelForSequenceClassification.from_pretrained, path, "teacher model", **kwargs)
    return model, tokenizer


def train_teacher(
    config: TeacherConfig,
    train: LabeledSet,
    label_names: list[str],
    out_dir: Path,
    accelerator: Accelerator,
    seed: int,
    checkpoint_dir: Path | None = None,
) -> dict:
    """Fine-tune for `config.epochs`; no model selection (the few labeled examples are all used for training).
    Writes a `save_pretrained` folder (safetensors) atomically; returns training stats."""
    model, tokenizer = load_teacher(config.model, len(label_names), label_names, config.trust_remote_code)
    features = tokenizer(train.texts, truncation=True, max_length=config.max_length)
    examples = [
        {"input_ids": ids, "attention_mask": mask, "labels": label}
        for ids, mask, label in zip(features["input_ids"], features["attention_mask"], train.labels, strict=True)
    ]
    steps = max(1, math.ceil(config.epochs * math.ceil(len(examples) / config.batch_size)))
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": config.weight_decay,
        },
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps), steps)
    model, result = fit(
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        examples=examples,
        batch_size=config.batch_size,
        collate=DataCollatorWithPadding(tokenizer),
        loss_fn=lambda m, batch: m(**batch).loss,
        steps=steps,
        seed=seed,
        description="teacher: fine-tune",
        name="teacher",
        checkpoint_dir=checkpoint_dir,
    )
    save_pretrained_atomic(accelerator, model, tokenizer, out_dir)
    return {
        "steps": result.steps,
        "final_loss": result.history[-1]["loss"],
        "resumed_from_epoch": result.resumed_from_epoch,
    }


@torch.inference_mode()
def teacher_logits(
    model, tokenizer, texts: list[str], batch_size: int, max_length: int, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Logits for `texts` in input order (batched by length to waste little compute on padding)."""
    model.eval().to(device)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in chunk], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        ).to(device)
        out[chunk] = model(**batch).logits.float().cpu().numpy()
    return out
