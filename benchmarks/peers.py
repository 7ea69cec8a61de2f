"""The peers as arms of the low-data harness: SetFit and model2vec, trained on the same labeled sample as our
students and scored on the same test texts, in the same process (`lowdata.py --arms setfit model2vec`).

Both are optional extras (`pip install -e ".[peers]"`); a run that asks for them without the packages stops with
one line naming the extra.

  setfit    contrastive fine-tuning of the sentence encoder on pairs of the labeled texts, then a logistic-regression
            head on its embeddings (Tunstall et al. 2022). SetFit's own TrainingArguments defaults, except
            `num_iterations=20`: the pair count of the SetFit paper's few-shot runs and its README (the default
            oversampling would train on every negative pair: 49k pairs, ~20 min a cell here at N = 64 on ag_news).
  model2vec static embeddings distilled from the same base encoder (`model2vec.distill`, PCA to 256 dims, SIF), mean
            pooled, then scikit-learn's logistic regression on them: model2vec's recipe without a trained head
            network (its `StaticModelForClassification` needs pytorch-lightning).

Each returns the fitted predictor (texts -> class ids) with its parameter count and training seconds; lowdata.py
times every arm of a cell side by side in one `timed_passes` call, so examples/s are comparable across arms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

PEERS = ("setfit", "model2vec")


@dataclass
class PeerModel:
    name: str
    predict: Callable[[list[str]], np.ndarray]  # texts -> predicted class ids
    params: int
    train_seconds: float
    settings: dict[str, Any]


def _missing(package: str) -> SystemExit:
    return SystemExit(f"the {package} arm needs the peers extra: pip install -e '.[peers]'")


def train_setfit(encoder: str, texts: list[str], labels: list[int], seed: int) -> PeerModel:
    try:
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError:
        raise _missing("setfit") from None
    settings = {"num_iterations": 20, "batch_size": 16, "num_epochs": 1, "head": "logistic regression"}
    started = time.perf_counter()
    model = SetFitModel.from_pretrained(encoder)
    arguments = TrainingArguments(
        num_iterations=settings["num_iterations"],
        batch_size=settings["batch_size"],
        num_epochs=settings["num_epochs"],
        seed=seed,
        report_to="none",
        show_progress_bar=False,
        save_strategy="no",
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
    trainer.train()
    seconds = time.perf_counter() - started
    head = model.model_head
    params = sum(p.numel() for p in model.model_body.parameters()) + int(head.coef_.size + head.intercept_.size)

    def predict(batch: list[str]) -> np.ndarray:
        return np.asarray(model.predict(batch, batch_size=64, as_numpy=True, show_progress_bar=False))

    return PeerModel("setfit", predict, params, seconds, settings)


_STATIC: dict[str, tuple[Any, float]] = {}  # encoder -> (static model, seconds it took): it needs no labels


def train_model2vec(encoder: str, texts: list[str], labels: list[int], seed: int) -> PeerModel:
    """The static model depends on the encoder only, so one distillation serves every cell of a process; its
    seconds are still counted in every cell's training time (what a user with one task pays)."""
    try:
        from model2vec.distill import distill
    except ImportError:
        raise _missing("model2vec") from None
    from sklearn.linear_model import LogisticRegression

    settings = {"pca_dims": 256, "head": "logistic regression (C=1, max_iter=2000)"}
    if encoder not in _STATIC:
        started = time.perf_counter()
        _STATIC[encoder] = (distill(model_name=encoder, pca_dims=settings["pca_dims"]), time.perf_counter() - started)
    static, distill_seconds = _STATIC[encoder]
    started = time.perf_counter()
    head = LogisticRegression(max_iter=2000, random_state=seed).fit(
        static.encode(texts, show_progress_bar=False), labels
    )
    seconds = distill_seconds + time.perf_counter() - started
    embedding = static.embedding
    params = int(np.prod(embedding.shape)) + int(head.coef_.size + head.intercept_.size)

    def predict(batch: list[str]) -> np.ndarray:
        return head.predict(static.encode(batch, show_progress_bar=False))

    return PeerModel("model2vec", predict, params, seconds, settings)


TRAINERS = {"setfit": train_setfit, "model2vec": train_model2vec}
