"""Measurements for the report: accuracy, macro-F1, per-class scores, the confusion matrix, calibration and
selective prediction, size on disk and CPU throughput (the report itself is evaluation.report; the stage that fills
it is stages.evaluate; the calibration math is evaluation.calibration)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gendistill.evaluation import calibration
from gendistill.evaluation.report import (
    CalibrationRow,
    ClassMetrics,
    Reliability,
    ReliabilityPoint,
    RiskCoverageCurve,
    SelectiveRow,
)


def classification_metrics(gold: list[int], predicted: np.ndarray, num_labels: int) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
    )  # scikit-learn loads in ~0.7 s: imported on use, so the CLI starts fast

    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, average="macro", labels=list(range(num_labels)), zero_division=0)),
    }


def per_class_metrics(
    gold: list[int], predicted: np.ndarray, label_names: list[str]
) -> tuple[dict[str, ClassMetrics], list[list[int]]]:
    """Precision, recall, F1 and support per class (keyed by label name, in label order) and the confusion matrix
    (rows: true class, columns: predicted class). Every class is listed, including one that is never predicted or
    absent from the test set (its scores are 0, as scikit-learn's with zero_division=0)."""
    from sklearn.metrics import (  # scikit-learn loads in ~0.7 s: imported on use, so the CLI starts fast
        confusion_matrix,
        precision_recall_fscore_support,
    )

    labels = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=labels, average=None, zero_division=0
    )
    per_class = {
        name: ClassMetrics(
            precision=float(precision[i]), recall=float(recall[i]), f1=float(f1[i]), support=int(support[i])
        )
        for i, name in enumerate(label_names)
    }
    matrix = confusion_matrix(gold, predicted, labels=labels)
    return per_class, matrix.astype(int).tolist()


def _bins(probabilities: np.ndarray, labels: np.ndarray) -> list[ReliabilityPoint]:
    return [ReliabilityPoint(**vars(row)) for row in calibration.reliability(probabilities, labels)]


def calibrate_and_select(
    *,
    held_out: tuple[np.ndarray, np.ndarray] | None,
    test: tuple[np.ndarray, np.ndarray] | None,
    target_accuracy: float,
    fitted_on: str | None,
    accuracy_guarantee: float | None = None,
    not_fitted: str | None = None,
    cross_validated: bool = True,
) -> tuple[CalibrationRow, SelectiveRow]:
    """One model's calibration and selective prediction from its (logits, labels) on the held-out split and on
    test. The temperature and the threshold come from `held_out` alone; test is only measured. Without `held_out`,
    the test figures are those of the uncalibrated model and `not_fitted` says why. With `accuracy_guarantee` the
    threshold keeps the target with that probability (calibration.threshold_for_accuracy's `guarantee`). With
    `cross_validated` the temperature is calibration.choose_temperature's (T = 1 unless the fit lowers the
    cross-validated NLL); without, the plain fit."""
    temperature = None
    row = CalibrationRow(note=not_fitted)
    if held_out is not None:
        if cross_validated:
            choice = calibration.choose_temperature(*held_out)
        else:
            fitted = calibration.fit_temperature(*held_out)
            choice = calibration.TemperatureChoice(temperature=fitted, fitted=fitted)
        temperature = choice.temperature
        row = CalibrationRow(
            method="temperature",
            temperature=temperature,
            fitted_temperature=choice.fitted,
            cv_nll_fitted=choice.cv_nll_fitted,
            cv_nll_identity=choice.cv_nll_identity,
            fitted_on=fitted_on,
        )
    selective = SelectiveRow(target_accuracy=target_accuracy, guarantee=accuracy_guarantee)
    if held_out is not None:
        held_probabilities = calibration.softmax(held_out[0], temperature or 1.0)
        selective.threshold = calibration.threshold_for_accuracy(
            held_probabilities, held_out[1], target_accuracy, guarantee=accuracy_guarantee
        )
        if selective.threshold is not None:  # answered > 0: the threshold is a held-out text's confidence
            answered, right = calibration.selective_counts(held_probabilities, held_out[1], selective.threshold)
            selective.coverage_heldout, selective.accuracy_heldout = answered / len(held_out[1]), right / answered
            selective.answered_heldout = answered
            selective.accuracy_heldout_lower = calibration.accuracy_lower_bound(right, answered)
            selective.bound_probability = calibration.BOUND_PROBABILITY
    if test is not None:
        logits, labels = test
        before = calibration.softmax(logits)
        row.ece_before = calibration.expected_calibration_error(before, labels)
        row.brier_before = calibration.brier_score(before, labels)
        row.reliability = Reliability(before=_bins(before, labels))
        after = before
        if temperature is not None:
            after = calibration.softmax(logits, temperature)
            row.ece_after = calibration.expected_calibration_error(after, labels)
            row.brier_after = calibration.brier_score(after, labels)
            row.reliability.after = _bins(after, labels)
        curve = calibration.risk_coverage(after, labels).thinned()
        selective.curve = RiskCoverageCurve(
            split="test", coverage=curve.coverage.tolist(), risk=curve.risk.tolist(), threshold=curve.threshold.tolist()
        )
        if selective.threshold is not None:
            selective.coverage_test, selective.accuracy_test = calibration.selective_scores(
                after, labels, selective.threshold
            )
    return row, selective


def weights_size(directory: Path) -> int:
    """Bytes on disk of a model folder's weights and tokenizer files (what a deployment ships)."""
    patterns = ("*.safetensors", "tokenizer.json", "config.json", "vocab.txt", "*.model")
    return sum(path.stat().st_size for pattern in patterns for path in directory.glob(pattern))


def timed_passes(
    predictors: dict[str, Callable[[list[str]], Any]],
    texts: list[str],
    batch_size: int,
    threads: int | None = None,
    passes: int = 5,
    min_seconds: float = 0.0,
) -> dict[str, list[float]]:
    """Examples per second of each predictor over `texts` (in batches of `batch_size`, tokenization included),
    `passes` times, after one warm-up batch each. A pass goes over the texts again until it has run `min_seconds`:
    a fast student gets through 400 texts in 40 ms, where one scheduler hiccup moves the figure by a quarter. The
    predictors take turns within every pass, so a change in the machine's load during the measurement hits all of
    them alike and their per-pass ratios stay comparable."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for predict in predictors.values():
            predict(texts[:batch_size])
        results: dict[str, list[float]] = {name: [] for name in predictors}
        for _ in range(passes):
            for name, predict in predictors.items():
                done, start = 0, time.perf_counter()
                while True:
                    for offset in range(0, len(texts), batch_size):
                        predict(texts[offset : offset + batch_size])
                    done += len(texts)
                    elapsed = time.perf_counter() - start
                    if elapsed >= min_seconds:
                        break
                results[name].append(done / elapsed)
        return results
    finally:
        torch.set_num_threads(previous)


def throughput(
    predict: Callable[[list[str]], Any], texts: list[str], batch_size: int, threads: int | None = None
) -> float:
    """Examples per second of `predict` over `texts` in one timed pass after one warm-up batch (see
    `timed_passes` for several passes)."""
    return timed_passes({"model": predict}, texts, batch_size, threads, passes=1)["model"][0]
