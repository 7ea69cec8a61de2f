"""CPU latency and throughput of a run's teacher, its student (torch) and the student's ONNX fp32 and int8 exports.

    python benchmarks/latency.py runs/qs [--texts 500] [--out benchmarks/results/latency]

One process, the same timing texts (RUN_DIR/data/test.parquet, cycled to --texts) for every engine, tokenization
included: examples/s at batch 1 and 64, p50/p99 ms per call at batch 1, each with 1 thread and with all threads
(torch's default thread count, i.e. the physical cores). Writes <out>/<run name>.json and .md and prints the
table; ratios are against the teacher in the same setting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Predict = Callable[[list[str]], np.ndarray]
WARMUP_CALLS = 10


def load_test_set(run_dir: Path) -> tuple[list[str], list[int]]:
    import pandas as pd

    path = run_dir / "data" / "test.parquet"
    if not path.is_file():
        sys.exit(f"error: {path} not found (a run directory made by `gendistill run` has it)")
    frame = pd.read_parquet(path)
    return frame["text"].tolist(), frame["label"].astype(int).tolist()


def timing_texts(texts: list[str], count: int) -> list[str]:
    """The first `count` test texts, the test set cycled when it is smaller."""
    return (texts * -(-count // len(texts)))[:count]


def teacher_max_length(run_dir: Path) -> int:
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    return int((config.get("teacher") or {}).get("max_length", 128))


def set_threads(threads: int) -> None:
    """torch intra-op threads and the tokenizers' Rust pool: the 1-thread rows should use one core."""
    import torch

    torch.set_num_threads(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false" if threads == 1 else "true"


def measure(predict: Predict, texts: list[str]) -> dict[str, float]:
    """Batch 1: per-call latencies over every text; batch 64: total time over the same texts."""
    for text in texts[:WARMUP_CALLS]:
        predict([text])
    latencies = []
    for text in texts:
        start = time.perf_counter()
        predict([text])
        latencies.append(time.perf_counter() - start)
    predict(texts[:64])
    start = time.perf_counter()
    for i in range(0, len(texts), 64):
        predict(texts[i : i + 64])
    batch64 = time.perf_counter() - start
    return {
        "batch1_examples_per_s": len(texts) / sum(latencies),
        "batch64_examples_per_s": len(texts) / batch64,
        "batch1_p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "batch1_p99_ms": 1000 * float(np.percentile(latencies, 99)),
    }


def accuracy(predict: Predict, texts: list[str], gold: list[int]) -> float:
    """Accuracy on the whole test set (not the cycled timing texts), in batches of 64."""
    logits = np.concatenate([predict(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    return float(np.mean(logits.argmax(axis=1) == np.asarray(gold)))


def folder_size(directory: Path) -> int:
    """Bytes of an export folder: model, tokenizer and metadata (what a deployment ships, like weights_size)."""
    return sum(path.stat().st_size for path in directory.iterdir() if path.is_file())


def engines(run_dir: Path, export_root: Path) -> list[tuple[str, int, int, Callable[[int], Predict]]]:
    """(name, folder bytes, model file bytes, threads -> predict function) per engine; ONNX sessions are per
    thread count."""
    import transformers

    from gendistill.evaluate import weights_size
    from gendistill.export import export_onnx
    from gendistill.inference import Predictor
    from gendistill.students import StudentClassifier
    from gendistill.teachers.hf_encoder import load_teacher, teacher_logits

    transformers.logging.set_verbosity_error()
    model, tokenizer = load_teacher(str(run_dir / "teacher"))
    max_length = teacher_max_length(run_dir)
    student = StudentClassifier.from_pretrained(run_dir / "student")
    fp32 = export_onnx(run_dir, export_root / "fp32")
    int8 = export_onnx(run_dir, export_root / "int8", quantize="int8")

    def onnx(directory: Path) -> Callable[[int], Predict]:
        def make(threads: int) -> Predict:
            predictor = Predictor(directory, threads=threads)
            return lambda batch: predictor.logits(batch, len(batch))

        return make

    def file_size(path: Path) -> int:
        return path.stat().st_size

    return [
        (
            "teacher (torch)",
            weights_size(run_dir / "teacher"),
            file_size(run_dir / "teacher" / "model.safetensors"),
            lambda _: lambda batch: teacher_logits(model, tokenizer, batch, len(batch), max_length, "cpu"),
        ),
        (
            "student (torch)",
            weights_size(run_dir / "student"),
            file_size(run_dir / "student" / "model.safetensors"),
            lambda _: lambda batch: student.logits(batch, len(batch)),
        ),
        ("student ONNX fp32", folder_size(fp32), file_size(fp32 / "model.onnx"), onnx(fp32)),
        ("student ONNX int8", folder_size(int8), file_size(int8 / "model.onnx"), onnx(int8)),
    ]


def run(run_dir: Path, count: int) -> dict[str, Any]:
    import onnxruntime
    import torch

    test_texts, gold = load_test_set(run_dir)
    texts = timing_texts(test_texts, count)
    all_threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, size, model_bytes, make in engines(run_dir, Path(tmp)):
            set_threads(all_threads)
            print(f"accuracy of {name} on {len(test_texts)} test texts...", file=sys.stderr, flush=True)
            engine_accuracy = accuracy(make(all_threads), test_texts, gold)
            for threads in sorted({1, all_threads}):
                set_threads(threads)
                print(f"measuring {name}, {threads} thread(s)...", file=sys.stderr, flush=True)
                rows.append(
                    {
                        "engine": name,
                        "threads": threads,
                        "size_bytes": size,
                        "model_file_bytes": model_bytes,
                        "accuracy": engine_accuracy,
                        **measure(make(threads), texts),
                    }
                )
    for row in rows:
        teacher = next(r for r in rows if r["engine"].startswith("teacher") and r["threads"] == row["threads"])
        row["batch1_speedup_vs_teacher"] = row["batch1_examples_per_s"] / teacher["batch1_examples_per_s"]
        row["batch64_speedup_vs_teacher"] = row["batch64_examples_per_s"] / teacher["batch64_examples_per_s"]
        row["size_ratio_teacher_over_this"] = teacher["size_bytes"] / row["size_bytes"]
    return {
        "command": "python benchmarks/latency.py " + shlex.join(sys.argv[1:]),
        "run_dir": str(run_dir),
        "texts": len(texts),
        "test_texts": len(test_texts),
        "all_threads": all_threads,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "results": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"# Latency: {result['run_dir']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Timing: {result['texts']} texts from data/test.parquet, tokenization included; accuracy: all "
        f"{result['test_texts']} test texts. CPU {machine['processor']} "
        f"({machine['cpu_count']} logical cores; 'all' = {result['all_threads']} threads); torch "
        f"{machine['torch']}, onnxruntime {machine['onnxruntime']}. Speedups are against the teacher with the "
        "same threads.",
        "",
        "| engine | threads | model file (MB) | folder (MB) | test accuracy | ex/s b=1 | ex/s b=64 | p50 ms b=1 "
        "| p99 ms b=1 "
        "| speedup b=1 | speedup b=64 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["results"]:
        lines.append(
            f"| {row['engine']} | {row['threads']} | {row['model_file_bytes'] / 1e6:.2f} "
            f"| {row['size_bytes'] / 1e6:.2f} | {100 * row['accuracy']:.2f} "
            f"| {row['batch1_examples_per_s']:,.0f} | {row['batch64_examples_per_s']:,.0f} "
            f"| {row['batch1_p50_ms']:.2f} | {row['batch1_p99_ms']:.2f} "
            f"| {row['batch1_speedup_vs_teacher']:.1f}x | {row['batch64_speedup_vs_teacher']:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory with teacher/, student/ and data/test.parquet")
    parser.add_argument("--texts", type=int, default=500, help="texts per measurement (test set cycled)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "latency",
        help="folder for <run name>.json and .md",
    )
    args = parser.parse_args()
    if args.texts < 1:
        parser.error("--texts must be >= 1")
    for needed in ("teacher", "student"):
        if not (args.run_dir / needed).is_dir():
            parser.error(f"{args.run_dir}: no {needed}/ folder; pass a finished run directory")
    result = run(args.run_dir, args.texts)
    text = markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.run_dir.resolve().name
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {args.out / name}.json and .md")


if __name__ == "__main__":
    main()
