"""Train a student: distillation on soft targets, or CE for the baseline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from gendistill import progress
from gendistill.config import StudentConfig
from gendistill.students import StudentClassifier
from gendistill.students.losses import distillation_loss
from gendistill.training import tracking
from gendistill.training.loop import StopTraining, fit


def _collate(batch: list[tuple[list[int], np.ndarray, int]]) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _, _ in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (seq, _, _) in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq)
    return {
        "ids": ids,
        "lengths": torch.tensor([len(seq) for seq, _, _ in batch]),
        "teacher": torch.from_numpy(np.stack([logits for _, logits, _ in batch])),
        "gold": torch.tensor([gold for _, _, gold in batch]),
    }


def train_student(
    student: StudentClassifier,
    texts: list[str] | None,
    gold: list[int] | None,
    teacher_logits: np.ndarray | None,
    config: StudentConfig,
    accelerator: Accelerator,
    seed: int,
    steps: int | None = None,
    validation: tuple[list[str], list[int]] | None = None,
    description: str = "student",
    checkpoint_dir: Path | None = None,
    examples: Sequence[tuple[list[int], np.ndarray, int]] | None = None,
    stop_after: int | None = None,
) -> dict:
    """Train in place. With teacher logits, distill (MSE or KL, plus alpha * CE where gold >= 0); without,
    plain cross-entropy on gold labels. With `validation`, keep the epoch with the best validation accuracy, and
    with `stop_after` too, stop once it has not improved for that many epochs.

    The examples are `texts`/`gold`/`teacher_logits` in memory, or `examples`: an index-addressable store of
    (token ids, logits, gold) such as `ExampleStore`, for transfer sets too large to hold in memory."""
    if examples is None:
        assert texts is not None and gold is not None
        ids, lengths = student.tokenizer.encode(texts)
        sequences = [row[:length].tolist() for row, length in zip(ids, lengths, strict=True)]
        targets = (
            teacher_logits
            if teacher_logits is not None
            else np.zeros((len(texts), student.spec.num_labels), np.float32)
        )
        examples = list(zip(sequences, targets.astype(np.float32), gold, strict=True))
        distilling = teacher_logits is not None
    else:
        distilling = bool(getattr(examples, "has_logits", True))
    steps = steps or config.epochs * math.ceil(len(examples) / config.batch_size)
    optimizer = torch.optim.Adam(student.model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=config.learning_rate * 0.05)

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        logits = model(batch["ids"], batch["lengths"])
        if not distilling:
            return F.cross_entropy(logits, batch["gold"], reduction="sum"), len(logits)
        loss = distillation_loss(
            logits, batch["teacher"], batch["gold"], config.loss, config.temperature, config.alpha, reduction="sum"
        )
        return loss, len(logits)

    def validation_accuracy(model: torch.nn.Module) -> float:
        assert validation is not None
        student.model = model
        accuracy = float(np.mean(student.logits(validation[0]).argmax(axis=1) == np.asarray(validation[1])))
        if stop_after is not None:
            seen.append(accuracy)
            if len(seen) - 1 - int(np.argmax(seen)) >= stop_after:  # no new best for `stop_after` epochs
                raise StopTraining(accuracy)
        return accuracy

    seen: list[float] = []

    student.model, result = fit(
        accelerator=accelerator,
        model=student.model,
        optimizer=optimizer,
        scheduler=scheduler,
        examples=examples,
        batch_size=config.batch_size,
        collate=_collate,
        loss_fn=loss_fn,
        steps=steps,
        seed=seed,
        description=f"distill: {description}",
        name=description.replace(" ", "_"),
        checkpoint_dir=checkpoint_dir,
        max_grad_norm=5.0,
        evaluate=validation_accuracy if validation is not None else None,
        hparams={
            "student": config.model_dump(mode="json"),
            "examples": len(examples),
            "distilled": teacher_logits is not None,
        },
    )
    return {
        "steps": result.steps,
        "epochs": result.epochs,
        "history": result.history,
        "resumed_from_epoch": result.resumed_from_epoch,
        **({"best_validation_accuracy": result.best_metric} if result.best_metric is not None else {}),
    }


def choose_epochs_by_cv(
    student: StudentClassifier,
    texts: list[str],
    gold: list[int],
    teacher_logits: np.ndarray | None,
    config: StudentConfig,
    accelerator: Accelerator,
    seed: int,
    max_epochs: int,
    folds: int,
) -> dict:
    """The epoch count for a student trained on the labeled texts alone, chosen by stratified k-fold
    cross-validation on those texts (never the test set): each fold trains a copy of `student` for up to
    `max_epochs` (or until its held-out accuracy has not improved for a tenth of them, at least 20 epochs; its
    curve then stays at its last value) and scores its held-out part after every epoch; the smallest epoch count
    whose mean held-out accuracy (smoothed over a few neighbouring epochs, since a fold holds a handful of texts)
    is the best wins.

    Why: a fixed budget matched to a distilled student's steps means hundreds of passes over a few dozen texts,
    after which a labeled-only student can predict one class for everything; a baseline that weak flatters every
    other method. With fewer than two texts in some class there is nothing to hold out: the budget stays."""
    import copy

    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(np.asarray(gold), minlength=student.spec.num_labels)
    splits = min(folds, int(counts[counts > 0].min()))
    if splits < 2 or max_epochs <= 1:
        return {"epochs": max_epochs, "folds": 0, "max_epochs": max_epochs, "reason": "a class has too few texts"}
    curves, trained = [], []
    labels = np.asarray(gold)
    # early stopping per fold: hundreds of one-step epochs cost minutes, and the best comes long before the budget
    patience = max(20, max_epochs // 10)
    splitter = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    with progress.muted(), tracking.paused():
        for fold, (train_rows, held_rows) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            candidate = copy.deepcopy(student)
            stats = train_student(
                candidate,
                [texts[i] for i in train_rows],
                labels[train_rows].tolist(),
                None if teacher_logits is None else teacher_logits[train_rows],
                config,
                accelerator,
                seed + fold,
                steps=max_epochs * math.ceil(len(train_rows) / config.batch_size),
                validation=([texts[i] for i in held_rows], labels[held_rows].tolist()),
                description=f"cv fold {fold + 1}",
                stop_after=patience,
            )
            curve = [record["validation"] for record in stats["history"]]
            trained.append(len(curve))
            curves.append(curve + [curve[-1]] * (max_epochs - len(curve)))  # stopped early: it stays where it was
    best, smoothed = best_epoch_count(curves)
    return {
        "epochs": best,
        "folds": splits,
        "max_epochs": len(smoothed),
        "fold_epochs": trained,
        "cv_accuracy": round(float(smoothed[best - 1]), 4),
        "curve": [round(float(v), 4) for v in smoothed],
    }


def best_epoch_count(curves: list[list[float]]) -> tuple[int, np.ndarray]:
    """(the smallest epoch count, 1-based, whose mean held-out accuracy over the folds is the best, the smoothed
    mean curve). The mean is smoothed over a window of 1/20 of the epochs: with a handful of held-out texts per
    fold, one lucky epoch early on should not end the training there."""
    width = min(len(curve) for curve in curves)
    mean = np.mean([curve[:width] for curve in curves], axis=0)
    window = max(1, width // 20)
    padded = np.pad(mean, (window // 2, window - 1 - window // 2), mode="edge")
    smoothed = np.convolve(padded, np.ones(window) / window, mode="valid")
    return int(np.flatnonzero(smoothed >= smoothed.max() - 1e-9)[0]) + 1, smoothed
