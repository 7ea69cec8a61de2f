"""Accuracy, macro-F1, agreement, size and CPU speed of teacher and students; the report (JSON + Markdown)."""

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


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _int(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable report.md from report.json's content."""
    lines = [f"# gendistill report: {report.get('run_dir', '')}", ""]
    test = report.get("test_examples")
    lines += [
        f"Test set: {test} examples. Labeled training examples: {report.get('train_examples')}."
        if test
        else "No test set: accuracy not measured.",
        "",
    ]
    lines += ["| model | accuracy | macro-F1 | params | size (bytes) | examples/s (CPU) |", "|---|---|---|---|---|---|"]
    for name in ("teacher", "student", "baseline_student"):
        row = report.get(name)
        if row:
            lines.append(
                f"| {name} | {_pct(row.get('accuracy'))} | {_pct(row.get('macro_f1'))} | {_int(row.get('params'))} "
                f"| {_int(row.get('size_bytes'))} | {_int(row.get('examples_per_s'))} |"
            )
    ratios = report.get("ratios", {})
    if ratios:
        lines += [
            "",
            f"Student vs teacher: {ratios.get('params_teacher_over_student', 0):.0f}x fewer parameters, "
            f"{ratios.get('speed_student_over_teacher', 0):.0f}x faster; agreement with the teacher on test: "
            f"{_pct(report.get('student', {}).get('teacher_agreement'))}%.",
        ]
    transfer = report.get("transfer_set", {})
    if transfer.get("sources"):
        lines += [
            "",
            "## Transfer set",
            "",
            "| source | requested | generated | kept | empty | too short | too long | duplicate | training copy |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for source in transfer["sources"]:
            drops = source["drops"]
            lines.append(
                f"| {source['type']} | {source['requested'] if source['requested'] is not None else 'all'} "
                f"| {source['generated']} | {source['kept']} | {drops['empty']} | {drops['too_short']} "
                f"| {drops['too_long']} | {drops['duplicate']} | {drops['training_copy']} |"
            )
        lines.append(f"\nTotal transfer texts: {transfer.get('kept', 0)}.")
    stages = report.get("stages", {})
    if stages:
        lines += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {name} | {info['seconds']:.1f} |" for name, info in stages.items()]
    for note in report.get("notes", []):
        lines.append(f"\nNote: {note}")
    return "\n".join(lines) + "\n"
