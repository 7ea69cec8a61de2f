"""The epoch count of a student trained on the labeled texts alone, chosen by k-fold cross-validation on them."""

from __future__ import annotations

import copy

import numpy as np
from accelerate import Accelerator

from gendistill import progress
from gendistill.config import StudentConfig
from gendistill.students.classifier import StudentClassifier
from gendistill.students.examples import InMemoryExamples
from gendistill.students.trainer import train_student
from gendistill.training import tracking
from gendistill.training.budget import steps_for_epochs


def choose_epochs_by_cv(
    student: StudentClassifier,
    texts: list[str],
    gold: list[int],
    teacher_logits: np.ndarray | None,
    *,
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
    counts = np.bincount(np.asarray(gold), minlength=student.spec.num_labels)
    splits = min(folds, int(counts[counts > 0].min()))
    if splits < 2 or max_epochs <= 1:
        return {"epochs": max_epochs, "folds": 0, "max_epochs": max_epochs, "reason": "a class has too few texts"}
    curves, trained = [], []
    labels = np.asarray(gold)
    # early stopping per fold: hundreds of one-step epochs cost minutes, and the best comes long before the budget
    patience = max(20, max_epochs // 10)
    from sklearn.model_selection import (
        StratifiedKFold,
    )  # scikit-learn loads in ~0.7 s: imported on use, so the CLI starts fast

    splitter = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    with progress.muted(), tracking.paused():
        for fold, (train_rows, held_rows) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            candidate = copy.deepcopy(student)
            examples = InMemoryExamples.from_texts(
                candidate,
                [texts[i] for i in train_rows],
                labels[train_rows].tolist(),
                None if teacher_logits is None else teacher_logits[train_rows],
            )
            stats = train_student(
                candidate,
                examples,
                config,
                accelerator,
                seed=seed + fold,
                steps=steps_for_epochs(max_epochs, len(train_rows), config.batch_size),
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
