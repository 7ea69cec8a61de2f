"""`setfit` teacher: SetFit (Tunstall et al. 2022) on the labeled texts, then soft labels from its head.

Why a second encoder teacher: with a few dozen labels per class, fine-tuning an encoder with a fresh softmax head
(`hf_encoder`) is the weaker recipe on short texts. SetFit first trains the sentence encoder contrastively on pairs
of the labeled texts (same class or not: N labels give N x iterations pairs), then fits a logistic regression on its
embeddings. On sst2 at 64 labels per class it beat our fine-tuned MiniLM teacher by ~4 points in the harness
(benchmarks/results/RESULTS.md), and a student can only be as good as the teacher that labels its transfer set.

The training is SetFit's own `Trainer` (a well-kept library; `pip install "gendistill[setfit]"`). What is saved is
ours, so that nothing pickled is ever loaded: the trained body as a sentence-transformers folder (safetensors), and the
logistic-regression head as a weight matrix and bias in `head.safetensors`. Labeling computes the head's decision
function (`embeddings @ weight.T + bias`), the logits whose softmax is the head's class probabilities, so the
student's KL/MSE losses see the same scores the head decides by. The folder is also an encoder folder with the
teacher's tokenizer: `student.init: teacher` works as with `hf_encoder` (and `student.init_from: finetuned` embeds
tokens with the contrastively trained body).

Multi-label tasks use SetFit's `one-vs-rest` strategy (`multi_target_strategy`): pairs are positive when the two texts
share a label, and the head is one logistic regression per label. Its saved rows are then each label's log-odds,
so the labeler's logits are what the student's per-label sigmoid targets need, with no softmax between.

One process: SetFit's trainer is not run under `accelerate launch` here (it would start its own data-parallel run
beside ours); fit the teacher with `gendistill train-teacher` in one process, the later stages can then use many.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from gendistill import progress
from gendistill.errors import ConfigError, ModelLoadError
from gendistill.evaluation.measure import weights_size
from gendistill.teachers.base import FitContext
from gendistill.teachers.hf_encoder import EncoderTeacherConfig

if TYPE_CHECKING:
    import torch

HEAD_FILE = "head.safetensors"


class SetFitTeacher(EncoderTeacherConfig):
    """A sentence encoder trained contrastively on pairs of the labeled texts, with a logistic-regression head."""

    kind: Literal["setfit"] = "setfit"
    supports_multi_label: ClassVar[bool] = True  # SetFit's one-vs-rest strategy: a logistic regression per label
    how_trained: ClassVar[str] = (
        "trained with SetFit on the labeled examples (contrastive pairs, then a logistic-regression head)"
    )
    model: str = Field(description="sentence encoder: Hugging Face id or local folder (sentence-transformers or plain)")
    num_iterations: Annotated[int, Field(ge=1)] = Field(
        default=20,
        description="pairs drawn per labeled text (SetFit's few-shot setting); the pair count is 2 x this x texts",
    )
    epochs: Annotated[int, Field(ge=1)] = Field(default=1, description="passes over the pairs (body training)")
    batch_size: Annotated[int, Field(ge=1)] = 16
    body_learning_rate: Annotated[float, Field(gt=0)] = 2e-5
    head_c: Annotated[float, Field(gt=0)] = Field(
        default=1.0, description="inverse regularisation strength of the logistic-regression head (scikit-learn C)"
    )

    def check(self) -> None:
        require_setfit()
        super().check()

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        if ctx.accelerator is not None and ctx.accelerator.num_processes > 1:
            raise ConfigError(
                "teacher.kind setfit fits in one process: run `gendistill train-teacher` without accelerate launch "
                "first; the later stages then run on every process"
            )
        device = str(ctx.accelerator.device) if ctx.accelerator is not None else None  # the run's `device`
        return train_setfit(
            self,
            ctx.train.texts,
            ctx.train.labels,
            ctx.label_names,
            ctx.out_dir,
            ctx.checkpoint_dir,
            ctx.seed,
            device,
            multi_label=ctx.multi_label,
        )

    def load(self, directory: Path, device: torch.device | str) -> SetFitLabeler:
        return SetFitLabeler.load(directory, device, self.trust_remote_code)


def require_setfit() -> None:
    if importlib.util.find_spec("setfit") is None:
        raise ModelLoadError("teacher.kind setfit needs the setfit package: pip install 'gendistill[setfit]'")


def train_setfit(
    config: SetFitTeacher,
    texts: list[str],
    labels: list[int],
    label_names: list[str],
    out_dir: Path,
    work_dir: Path,
    seed: int,
    device: str | None = None,
    *,
    multi_label: bool = False,
) -> dict[str, Any]:
    """Train body and head with SetFit's trainer, then save both without pickle (atomically: a `.tmp` twin).
    An interrupted fit starts again (minutes on a CPU): SetFit's trainer keeps no resumable state we could trust.
    `multi_label`: `labels` are lists of label ids, trained one-vs-rest."""
    require_setfit()
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from transformers import set_seed

    set_seed(seed)
    # the body is loaded by sentence-transformers directly: SetFitModel.from_pretrained would unpickle a
    # model_head.pkl found in the folder
    body = SentenceTransformer(
        config.model,
        device=device,  # None: sentence-transformers picks the accelerator
        trust_remote_code=config.trust_remote_code,
        model_kwargs={"use_safetensors": None if config.allow_pickle_weights else True},
    )
    body.max_seq_length = config.max_length
    head: Any = LogisticRegression(C=config.head_c, max_iter=1000, random_state=seed)
    targets: list = labels
    if multi_label:
        head = OneVsRestClassifier(head)
        targets = [[int(i in row) for i in range(len(label_names))] for row in labels]  # SetFit wants 0/1 rows
    model = SetFitModel(model_body=body, model_head=head, multi_target_strategy="one-vs-rest" if multi_label else None)
    arguments = TrainingArguments(
        output_dir=str(work_dir),
        num_iterations=config.num_iterations,
        num_epochs=config.epochs,
        batch_size=config.batch_size,
        body_learning_rate=config.body_learning_rate,
        seed=seed,
        report_to="none",
        show_progress_bar=progress.enabled(),  # minutes on a CPU: show it unless progress is off
        save_strategy="no",
        logging_strategy="no",
    )
    dataset = Dataset.from_dict({"text": texts, "label": targets})
    trainer = Trainer(model=model, args=arguments, train_dataset=dataset)
    trainer.train()
    shutil.rmtree(arguments.output_dir, ignore_errors=True)
    weight, bias = (
        one_vs_rest_weights(head, label_names) if multi_label else head_weights(head, len(label_names), label_names)
    )

    from safetensors.numpy import save_file

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    body.save(str(tmp), safe_serialization=True, create_model_card=False)
    metadata = {"normalize_embeddings": str(bool(model.normalize_embeddings)).lower()}
    save_file({"weight": weight, "bias": bias}, str(tmp / HEAD_FILE), metadata=metadata)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return {"pairs": 2 * config.num_iterations * len(texts) * config.epochs, "examples": len(texts)}


def head_weights(head: Any, n_classes: int, label_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A fitted scikit-learn linear classifier as (weight [classes, dim], bias [classes]) logits. A binary one has a
    single row z (the log-odds of class 1): it becomes -z/2, +z/2, whose softmax is the same probability."""
    classes = [int(c) for c in head.classes_]
    missing = [label_names[i] for i in range(n_classes) if i not in classes]
    if missing:
        raise ConfigError(f"setfit teacher: the labeled set has no example of class {', '.join(map(repr, missing))}")
    coef, intercept = np.asarray(head.coef_, dtype=np.float32), np.asarray(head.intercept_, dtype=np.float32)
    if coef.shape[0] == 1 and n_classes == 2:
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    order = np.argsort(classes)  # rows in class-id order
    return np.ascontiguousarray(coef[order]), np.ascontiguousarray(intercept[order])


def one_vs_rest_weights(head: Any, label_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A fitted one-vs-rest head as (weight [labels, dim], bias [labels]): row i is label i's log-odds, so
    sigmoid(logits) is each label's probability. A label with no positive (or no negative) labeled text has a
    constant estimator without coefficients: refused, naming it (the teacher could never say yes, or no, to it)."""
    weights, biases = [], []
    for index, estimator in enumerate(head.estimators_):
        if not hasattr(estimator, "coef_"):
            raise ConfigError(
                f"setfit teacher: label {label_names[index]!r} is on every labeled text or on none; a one-vs-rest "
                "head cannot learn it: give it both examples and counter-examples"
            )
        weights.append(np.asarray(estimator.coef_, dtype=np.float32)[0])
        biases.append(np.float32(np.asarray(estimator.intercept_).reshape(-1)[0]))
    return np.ascontiguousarray(np.stack(weights)), np.asarray(biases, dtype=np.float32)


class SetFitLabeler:
    """The saved body and head, ready to label texts."""

    def __init__(self, body: Any, weight: np.ndarray, bias: np.ndarray, normalize: bool, directory: Path):
        self.body, self.weight, self.bias, self.normalize, self.directory = body, weight, bias, normalize, directory

    @classmethod
    def load(cls, directory: Path, device: torch.device | str, trust_remote_code: bool = False) -> SetFitLabeler:
        from safetensors import safe_open
        from sentence_transformers import SentenceTransformer

        with safe_open(str(directory / HEAD_FILE), framework="numpy") as head:
            weight, bias = head.get_tensor("weight"), head.get_tensor("bias")
            normalize = (head.metadata() or {}).get("normalize_embeddings") == "true"
        body = SentenceTransformer(
            str(directory),
            device=str(device),
            trust_remote_code=trust_remote_code,
            model_kwargs={"use_safetensors": True},
        )
        return cls(body, weight, bias, normalize, directory)

    def logits(self, texts: list[str], batch_size: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.bias)), dtype=np.float32)
        embeddings = self.body.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=progress.enabled(),  # minutes on a CPU: show it unless progress is off
        )
        return (embeddings.astype(np.float32) @ self.weight.T + self.bias).astype(np.float32)

    def describe(self) -> dict[str, Any]:

        params = sum(p.numel() for p in self.body.parameters()) + self.weight.size + self.bias.size
        return {"params": int(params), "size_bytes": weights_size(self.directory)}
