"""The cascade measured (issue 22): accuracy, the share of texts sent to the fallback and per-request latency (p50,
p99) of the student alone, the teacher alone and the cascade at several confidence thresholds, side by side in one
run on one machine.

The run must be calibrated (a validation split: `benchmarks/calibration.py` makes such runs). Its student is
exported to ONNX; its teacher is served by `gendistill serve-teacher`'s app and the student by `gendistill serve`'s
app, each on 127.0.0.1 in this process (uvicorn in a thread, as the CLI configures it). Every test text is one
HTTP request (`/predict/batch` with one text), sent one after the other: the latency a client of the service
sees, fallback included.

    python benchmarks/cascade.py RUN_DIR --thresholds 0.7 0.8 stored --texts 1000 \\
        --out benchmarks/results/cascade/ag_news-s0.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from gendistill.artifacts.calibration import resolve_min_confidence
from gendistill.artifacts.cascade import ServedFallback
from gendistill.artifacts.export import export_onnx
from gendistill.artifacts.serve import create_app, serving_in_background
from gendistill.artifacts.teacher_server import create_teacher_app, load_run_teacher
from gendistill.io import read_json
from gendistill.pipeline.layout import RunLayout


def measure(url: str, texts: list[str], gold: list[str]) -> dict[str, Any]:
    """One request per text (`/predict/batch` with one text: the route every server here has): accuracy of the
    answers, the share answered by the fallback, latency."""
    seconds, right, escalated, errors = [], 0, 0, 0
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/predict/batch", json={"texts": texts[:1]})  # warm-up
        for text, label in zip(texts, gold, strict=True):
            started = time.perf_counter()
            answer = client.post("/predict/batch", json={"texts": [text]}).json()["predictions"][0]
            seconds.append(time.perf_counter() - started)
            right += answer.get("label") == label
            escalated += answer.get("model") == "fallback"
            errors += bool(answer.get("fallback_error"))
    ordered = sorted(seconds)
    return {
        "accuracy": right / len(texts),
        "fallback_share": escalated / len(texts),
        "fallback_errors": errors,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "mean_ms": 1000 * statistics.mean(seconds),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--thresholds", nargs="+", default=["0.7", "0.8", "stored"])
    parser.add_argument("--texts", type=int, default=1000, help="the first N test texts")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    layout = RunLayout(args.run_dir)
    names = read_json(layout.label_names)
    table = pq.read_table(layout.split("test")).slice(0, args.texts)
    texts = table.column("text").to_pylist()
    gold = [names[label] for label in table.column("label").to_pylist()]
    teacher, labels, _ = load_run_teacher(args.run_dir)
    results: dict[str, Any] = {"run_dir": str(args.run_dir), "texts": len(texts), "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory() as tmp:
        export = export_onnx(args.run_dir, Path(tmp) / "onnx")
        with serving_in_background(create_teacher_app(teacher, labels)) as teacher_url:
            print("teacher alone", flush=True)
            results["teacher"] = measure(teacher_url, texts, gold)
            with serving_in_background(create_app(export, threads=1)) as student_url:
                print("student alone", flush=True)
                results["student"] = measure(student_url, texts, gold)
            for value in args.thresholds:
                threshold = resolve_min_confidence(value, export)
                fallback = ServedFallback(teacher_url, names)
                app = create_app(export, threads=1, min_confidence=threshold, fallback=fallback)
                with serving_in_background(app) as cascade_url:
                    print(f"cascade at {threshold:.3f}", flush=True)
                    row = measure(cascade_url, texts, gold)
                    results[f"cascade@{value}"] = {"threshold": threshold, **row}
                fallback.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
