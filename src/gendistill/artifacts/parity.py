"""Export parity: how closely each exported graph answers like the torch student it came from, measured at export
on the run's own test texts (the first MAX_TEXTS of data/test.parquet).

`export.verify` checks the fp32 graph on random ids, which proves the graph right but says nothing a user can act
on; this says what the shipped file does on real texts: per model (torch, ONNX fp32, ONNX int8 when quantized) its
test accuracy and macro-F1, the share of texts whose label equals torch's, and the largest difference of any
class probability from torch's. The numbers go into metadata.json and the export's model card, whose accuracy is
then the shipped file's own (an int8 file's, not the torch student's it came from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from gendistill.evaluation.measure import classification_metrics
from gendistill.io import read_json
from gendistill.pipeline.layout import RunLayout

MAX_TEXTS = 1000
# names of the measured models, in the order the card lists them
TORCH, ONNX_FP32, ONNX_INT8 = "torch", "onnx_fp32", "onnx_int8"


def run_test_set(run_dir: Path | None, limit: int | None = None) -> tuple[list[str], list[str] | None] | None:
    """(the first `limit` test texts of the run, their gold label names or None when they have no single label),
    or None when there is no run or it has no test set."""
    if run_dir is None:
        return None
    layout = RunLayout(run_dir)
    path = layout.split("test")
    if not path.is_file():
        return None
    table = pq.read_table(path).slice(0, limit or MAX_TEXTS)
    texts = table.column("text").to_pylist()
    labels = table.column("label").to_pylist() if "label" in table.column_names else None
    names = read_json(layout.label_names) if layout.label_names.is_file() else None
    if not texts:
        return None
    if labels is None or names is None or not all(isinstance(label, int) for label in labels):
        return texts, None  # a multi-label test set: agreement and probability gaps only
    return texts, [names[label] for label in labels]


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def measure(
    logits: dict[str, np.ndarray],
    label_names: list[str],
    gold: list[str] | None,
    thresholds: list[float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per model (`logits` by name, torch's under TORCH, all [texts, labels] in the same text order): label
    agreement with torch, the largest absolute probability difference from torch, and accuracy and macro-F1
    against `gold` (label names) when given. With `thresholds` (a multi-label student), probabilities are per-label
    sigmoids and a text agrees when its set of labels equals torch's."""
    if thresholds is not None:
        return _measure_multi_label(logits, np.asarray(thresholds))
    reference = softmax(logits[TORCH])
    reference_labels = reference.argmax(axis=1)
    index = {name: i for i, name in enumerate(label_names)}
    gold_ids = [index.get(name, -1) for name in gold] if gold is not None else None
    result: dict[str, dict[str, Any]] = {}
    for name, model_logits in logits.items():
        probabilities = softmax(model_logits)
        predicted = probabilities.argmax(axis=1)
        row: dict[str, Any] = {
            "label_agreement": float(np.mean(predicted == reference_labels)),
            "max_probability_diff": float(np.abs(probabilities - reference).max()),
        }
        if gold_ids is not None:
            row.update(classification_metrics(gold_ids, predicted, len(label_names)))
        result[name] = row
    return result


def _measure_multi_label(logits: dict[str, np.ndarray], thresholds: np.ndarray) -> dict[str, dict[str, Any]]:
    reference = 1.0 / (1.0 + np.exp(-np.asarray(logits[TORCH], dtype=np.float64)))
    decided = reference >= thresholds
    result = {}
    for name, model_logits in logits.items():
        probabilities = 1.0 / (1.0 + np.exp(-np.asarray(model_logits, dtype=np.float64)))
        result[name] = {
            "label_agreement": float(np.mean(((probabilities >= thresholds) == decided).all(axis=1))),
            "max_probability_diff": float(np.abs(probabilities - reference).max()),
        }
    return result


def describe(parity: dict[str, Any]) -> list[str]:
    """The card's markdown table of a parity record (metadata.json's `parity`)."""
    models = parity.get("models") or {}
    shipped = parity.get("shipped")
    names = {TORCH: "torch student", ONNX_FP32: "ONNX fp32", ONNX_INT8: "ONNX int8"}
    lines = [
        "| model | accuracy | macro-F1 | labels equal to torch's | largest probability difference |",
        "|---|---|---|---|---|",
    ]
    for key, row in models.items():
        accuracy = "–" if row.get("accuracy") is None else f"{100 * row['accuracy']:.2f}"
        macro_f1 = "–" if row.get("macro_f1") is None else f"{100 * row['macro_f1']:.2f}"
        lines.append(
            f"| {names.get(key, key)}{' (this file)' if key == shipped else ''} | {accuracy} | {macro_f1} | "
            f"{100 * row['label_agreement']:.2f}% | {row['max_probability_diff']:.2e} |"
        )
    return lines
