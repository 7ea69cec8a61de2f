"""Multi-label scores and per-label decision thresholds, as pure functions over 0/1 indicator matrices.

Accuracy means little when a text has several labels, so a multi-label model is scored the way the field reports
it (SetFit, scikit-learn, the GoEmotions paper): micro-F1 (every decision pooled: the headline), macro-F1 (labels
weighted equally: rare labels count), subset accuracy (every label of a text right), Hamming loss (the share of
wrong decisions), and per label precision, recall, F1 and support. scikit-learn computes them; this module only
fixes their arguments (`zero_division=0`: a label never predicted and never true scores 0, not a warning).

A sigmoid output at 0.5 is a poor decision rule for rare labels, so each label gets its own threshold, the one
that maximises that label's F1 on a held-out split (never the test file); ties go to the threshold nearest 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.5
THRESHOLD_FLOOR = 1e-4


def indicator(label_sets: Sequence[Sequence[int]], num_labels: int) -> np.ndarray:
    """Rows of class-id lists as a [rows, num_labels] 0/1 matrix."""
    out = np.zeros((len(label_sets), num_labels), dtype=np.int8)
    for row, labels in enumerate(label_sets):
        out[row, list(labels)] = 1
    return out


def decide(probabilities: np.ndarray, thresholds: Sequence[float] | float = DEFAULT_THRESHOLD) -> np.ndarray:
    """0/1 decisions: a label applies where its probability reaches its threshold."""
    return (probabilities >= np.asarray(thresholds, dtype=np.float64)).astype(np.int8)


def scores(truth: np.ndarray, predicted: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """The headline scores and the per-label table of 0/1 matrices `truth` and `predicted`."""
    # scikit-learn loads in ~0.7 s: imported on use, so the CLI and a loaded student start fast
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    return {
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(truth, predicted)),
        "hamming_loss": float(hamming_loss(truth, predicted)),
        "per_label": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
    }


def tune_thresholds(truth: np.ndarray, probabilities: np.ndarray) -> list[float]:
    """Per label, the threshold with the best F1 on these held-out rows (ties: nearest 0.5); a label with no
    positive row keeps 0.5, since no threshold can be chosen for it."""
    from sklearn.metrics import precision_recall_curve

    thresholds = []
    for label in range(truth.shape[1]):
        positives = truth[:, label]
        if positives.sum() == 0:
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        precision, recall, candidates = precision_recall_curve(positives, probabilities[:, label])
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        best = f1.max()
        tied = candidates[np.isclose(f1, best)]
        chosen = float(tied[np.argmin(np.abs(tied - DEFAULT_THRESHOLD))])
        # a saturated sigmoid can be exactly 0 or 1 in float32; a stored threshold stays strictly inside (0, 1)
        thresholds.append(min(max(chosen, THRESHOLD_FLOOR), 1.0 - THRESHOLD_FLOOR))
    return thresholds


def check_thresholds(thresholds: Sequence[float], num_labels: int, where: str) -> list[float]:
    """Thresholds as stored with a model: one per label, each strictly inside (0, 1); a ValueError naming `where`
    otherwise (0 would give every label to every text, 1 none)."""
    values = [float(value) for value in thresholds]
    if len(values) != num_labels:
        raise ValueError(f"{where}: {len(values)} thresholds for {num_labels} labels; give one per label")
    for index, value in enumerate(values):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{where}: threshold {value!r} of label {index} is outside (0, 1)")
    return values
