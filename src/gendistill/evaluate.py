"""Measurements for the report: accuracy, macro-F1, size on disk and CPU throughput (the report itself is
gendistill.report; the stage that fills it is gendistill.stages.evaluate)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(gold: list[int], predicted: np.ndarray, num_labels: int) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, average="macro", labels=list(range(num_labels)), zero_division=0)),
    }


def weights_size(directory: Path) -> int:
    """Bytes on disk of a model folder's weights and tokenizer files (what a deployment ships)."""
    patterns = ("*.safetensors", "tokenizer.json", "config.json", "vocab.txt", "*.model")
    return sum(path.stat().st_size for pattern in patterns for path in directory.glob(pattern))


def throughput(
    predict: Callable[[list[str]], Any], texts: list[str], batch_size: int, threads: int | None = None
) -> float:
    """Examples per second of `predict` over `texts` in batches of `batch_size` (tokenization included), after
    one warm-up batch."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        predict(texts[:batch_size])
        start = time.perf_counter()
        for offset in range(0, len(texts), batch_size):
            predict(texts[offset : offset + batch_size])
        return len(texts) / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
