"""`hf_encoder` teacher: fine-tune any Hugging Face sequence classifier (BERT, MiniLM, ...) on the labeled data,
then soft-label texts with its logits (the paper's teacher)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from gendistill.errors import ModelLoadError
from gendistill.evaluation.measure import weights_size
from gendistill.loading import (
    check_model_folder,
    check_tokenizer_vocabulary,
    check_weights_match_config,
    from_pretrained,
)
from gendistill.teachers.base import FitContext, TeacherConfig
from gendistill.training.budget import steps_for_epochs
from gendistill.training.finetune import fine_tune


class EncoderTeacherConfig(TeacherConfig):
    """What every teacher kind built on a local or Hub encoder shares: the model, its input length, the safety
    switches, the preflight checks, and the encoder folder a teacher-init student starts from."""

    model: str = Field(description="Hugging Face model id or local folder")
    max_length: Annotated[int, Field(ge=8)] = 128
    trust_remote_code: bool = False
    allow_pickle_weights: bool = Field(
        default=False, description="also load pytorch_model.bin (pickle) weights; default: safetensors only"
    )

    def inputs(self) -> list[str]:
        return [self.model]

    def check(self) -> None:
        check_model_folder(self.model, self.allow_pickle_weights, "teacher")
        check_weights_match_config(self.model, "teacher", self.trust_remote_code)
        check_positions(self.model, self.max_length, self.trust_remote_code)
        check_tokenizer_vocabulary(self.model, "teacher", self.trust_remote_code)

    def student_init(self, directory: Path) -> tuple[Path, str]:
        return directory, self.model


class HFEncoderTeacher(EncoderTeacherConfig):
    """A pretrained encoder with a fresh classification head, fine-tuned on the labeled texts (multi-label: one
    sigmoid output per label, trained with binary cross-entropy, as transformers' `multi_label_classification`)."""

    kind: Literal["hf_encoder"] = "hf_encoder"
    supports_multi_label: ClassVar[bool] = True
    model: str = Field(description="Hugging Face model id or local folder (AutoModelForSequenceClassification)")
    epochs: Annotated[float, Field(gt=0)] = 10
    learning_rate: Annotated[float, Field(gt=0)] = 5e-5
    batch_size: Annotated[int, Field(ge=1)] = 16
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    warmup_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        return train_teacher(self, ctx)

    def load(self, directory: Path, device: torch.device | str) -> EncoderTeacher:
        model, tokenizer = load_teacher(str(directory), trust_remote_code=self.trust_remote_code)
        return EncoderTeacher(model.to(device), tokenizer, self.max_length, directory)


def check_positions(model: str, max_length: int, trust_remote_code: bool, section: str = "teacher") -> None:
    """Fail in seconds when `max_length` exceeds the model's position embeddings (loads only its config)."""
    from transformers import AutoConfig

    config = from_pretrained(AutoConfig.from_pretrained, model, f"{section} model", trust_remote_code=trust_remote_code)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and 0 < positions < max_length:
        raise ModelLoadError(
            f"{section}.max_length={max_length} but {model!r} has only {positions} positions; "
            f"set {section}.max_length to at most {positions}"
        )


class EncoderTeacher:
    """A fine-tuned encoder ready to label texts."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int, directory: Path):
        self.model, self.tokenizer, self.max_length, self.directory = model, tokenizer, max_length, directory

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def logits(self, texts: list[str], batch_size: int) -> np.ndarray:
        return teacher_logits(self.model, self.tokenizer, texts, batch_size, self.max_length, self.device)

    def describe(self) -> dict[str, Any]:

        return {
            "params": int(sum(p.numel() for p in self.model.parameters())),
            "size_bytes": weights_size(self.directory),
        }


def load_teacher(
    path: str,
    num_labels: int | None = None,
    label_names: list[str] | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    multi_label: bool = False,
):
    """(model, tokenizer); with `num_labels`, a fresh classification head sized for the task (`multi_label`: its
    config says `multi_label_classification`, so the saved folder says what its logits mean)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = from_pretrained(
        AutoTokenizer.from_pretrained, path, "teacher tokenizer", trust_remote_code=trust_remote_code
    )
    kwargs: dict = {"trust_remote_code": trust_remote_code, "use_safetensors": None if allow_pickle else True}
    if num_labels is not None:
        names = label_names or [str(i) for i in range(num_labels)]
        kwargs.update(
            num_labels=num_labels,
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            ignore_mismatched_sizes=True,
        )
        if multi_label:
            kwargs["problem_type"] = "multi_label_classification"
    model = from_pretrained(AutoModelForSequenceClassification.from_pretrained, path, "teacher model", **kwargs)
    return model, tokenizer


def train_teacher(config: HFEncoderTeacher, ctx: FitContext) -> dict:
    """Fine-tune for `config.epochs`; no model selection (the few labeled examples are all used for training).
    Writes a `save_pretrained` folder (safetensors) atomically; returns training stats."""
    from accelerate.utils import set_seed
    from transformers import DataCollatorWithPadding

    set_seed(ctx.seed)  # the new head's init must not depend on what ran before (e.g. starting the process group)
    model, tokenizer = load_teacher(
        config.model,
        len(ctx.label_names),
        ctx.label_names,
        config.trust_remote_code,
        config.allow_pickle_weights,
        multi_label=ctx.multi_label,
    )
    features = tokenizer(ctx.train.texts, truncation=True, max_length=config.max_length)
    targets = multi_hot(ctx.train.labels, len(ctx.label_names)) if ctx.multi_label else ctx.train.labels
    examples = [
        {"input_ids": ids, "attention_mask": mask, "labels": label}
        for ids, mask, label in zip(features["input_ids"], features["attention_mask"], targets, strict=True)
    ]
    steps = steps_for_epochs(config.epochs, len(examples), config.batch_size)
    result = fine_tune(
        ctx,
        model,
        tokenizer,
        name="teacher",
        examples=examples,
        collate=DataCollatorWithPadding(tokenizer),
        loss_fn=multi_label_loss_sum if ctx.multi_label else classification_loss_sum,
        batch_size=config.batch_size,
        steps=steps,
        recipe={
            "learning_rate": config.learning_rate,
            "weight_decay": config.weight_decay,
            "warmup_ratio": config.warmup_ratio,
            "decay_norms_and_biases": False,
        },
        hparams={"teacher": config.model_dump(mode="json"), "examples": len(examples)},
    )
    return {
        "steps": result.steps,
        "final_loss": result.history[-1]["loss"],
        "resumed_from_epoch": result.resumed_from_epoch,
    }


def classification_loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy and the example count: the training loop turns these into the mean over the whole
    batch across processes, so training on N processes matches one process."""
    labels = batch.pop("labels")
    logits = model(**batch).logits
    return torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum"), len(labels)


def multi_hot(label_sets: list[list[int]], num_labels: int) -> list[list[float]]:
    """Each row's class ids as a 0/1 float row (the targets of binary cross-entropy)."""
    return [[float(label in labels) for label in range(num_labels)] for labels in label_sets]


def multi_label_loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Binary cross-entropy summed over labels and texts, and the text count (as `classification_loss_sum`)."""
    labels = batch.pop("labels").float()
    logits = model(**batch).logits.float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
    return loss, len(labels)


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
