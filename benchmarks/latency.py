"""CPU latency and throughput of a run's teacher, its student (torch) and the student's ONNX fp32 and int8 exports.

    python benchmarks/latency.py runs/qs [--texts 500] [--repeat 1] [--out benchmarks/results/latency] [--dynamic-int8]

One process, the same timing texts (RUN_DIR/data/test.parquet, cycled to --texts) for every engine, tokenization
included: examples/s at batch 1 and 64, p50/p99 ms per call at batch 1, each with 1 thread and with all threads
(torch's default thread count, i.e. the physical cores). Writes <out>/<run name>.json and .md and prints the
table; ratios are against the teacher in the same setting.

On the whole test set, per engine: accuracy (batches of 64), how many labels are the same when each text is
predicted alone ("alone = batch"; an answer must not depend on the batch, so 100% is required of the exports),
the largest probability change alone vs in the batch, and agreement with the fp32 ONNX export's labels.
--dynamic-int8 adds onnxruntime's dynamic int8 (the previous `--quantize int8`, whose activation scales come from
the whole batch) for comparison.
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


def measure(predict: Predict, texts: list[str], repeat: int = 1) -> dict[str, float]:
    """Batch 1: per-call latencies over every text; batch 64: total time over the same texts. With repeat > 1, the
    fastest of that many passes for each (on a shared machine, the pass least disturbed by other work)."""
    for text in texts[:WARMUP_CALLS]:
        predict([text])
    predict(texts[:64])
    best_latencies, best_batch64 = None, float("inf")
    for _ in range(repeat):
        latencies = []
        for text in texts:
            start = time.perf_counter()
            predict([text])
            latencies.append(time.perf_counter() - start)
        if best_latencies is None or sum(latencies) < sum(best_latencies):
            best_latencies = latencies
        start = time.perf_counter()
        for i in range(0, len(texts), 64):
            predict(texts[i : i + 64])
        best_batch64 = min(best_batch64, time.perf_counter() - start)
    return {
        "batch1_examples_per_s": len(texts) / sum(best_latencies),
        "batch64_examples_per_s": len(texts) / best_batch64,
        "batch1_p50_ms": 1000 * float(np.percentile(best_latencies, 50)),
        "batch1_p99_ms": 1000 * float(np.percentile(best_latencies, 99)),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def quality(predict: Predict, texts: list[str], gold: list[int]) -> tuple[dict[str, float], np.ndarray]:
    """On the whole test set (not the cycled timing texts): accuracy in batches of 64, and how the answers change
    when each text is predicted alone. Returns the metrics and the batched labels."""
    batched = softmax(np.concatenate([predict(texts[i : i + 64]) for i in range(0, len(texts), 64)]))
    alone = softmax(np.concatenate([predict([text]) for text in texts]))
    labels = batched.argmax(axis=1)
    return {
        "accuracy": float(np.mean(labels == np.asarray(gold))),
        "same_label_alone": float(np.mean(labels == alone.argmax(axis=1))),
        "max_prob_change_alone": float(np.abs(batched - alone).max()),
    }, labels


def folder_size(directory: Path) -> int:
    """Bytes of an export folder: model, tokenizer and metadata (what a deployment ships, like weights_size)."""
    return sum(path.stat().st_size for path in directory.iterdir() if path.is_file())


def dynamic_int8(fp32: Path, out: Path) -> Path:
    """The previous `--quantize int8`: onnxruntime dynamic quantization (activation scales from the whole batch)."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    shutil.copytree(fp32, out)
    quantize_dynamic(
        str(fp32 / "model.onnx"),
        str(out / "model.onnx"),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Gather", "LSTM", "MatMul", "Gemm"],
    )
    return out


def engines(
    run_dir: Path, export_root: Path, with_dynamic: bool
) -> list[tuple[str, int, int, Callable[[int], Predict]]]:
    """(name, folder bytes, model file bytes, threads -> predict function) per engine; ONNX sessions are per
    thread count."""
    import transformers

    from gendistill.artifacts.export import export_onnx
    from gendistill.artifacts.inference import Predictor
    from gendistill.evaluation.measure import weights_size
    from gendistill.students.classifier import StudentClassifier
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

    dynamic = [dynamic_int8(fp32, export_root / "dynamic-int8")] if with_dynamic else []
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
        *[
            ("student ONNX dynamic int8 (old)", folder_size(path), file_size(path / "model.onnx"), onnx(path))
            for path in dynamic
        ],
    ]


def run(run_dir: Path, count: int, with_dynamic: bool = False, repeat: int = 1) -> dict[str, Any]:
    import onnxruntime
    import torch

    test_texts, gold = load_test_set(run_dir)
    texts = timing_texts(test_texts, count)
    all_threads = torch.get_num_threads()
    rows = []
    fp32_labels = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, size, model_bytes, make in engines(run_dir, Path(tmp), with_dynamic):
            set_threads(all_threads)
            print(f"accuracy of {name} on {len(test_texts)} test texts...", file=sys.stderr, flush=True)
            metrics, labels = quality(make(all_threads), test_texts, gold)
            if name == "student ONNX fp32":
                fp32_labels = labels
            is_student_onnx = name.startswith("student ONNX") and fp32_labels is not None
            metrics["same_label_as_onnx_fp32"] = float(np.mean(labels == fp32_labels)) if is_student_onnx else None
            for threads in sorted({1, all_threads}):
                set_threads(threads)
                print(f"measuring {name}, {threads} thread(s)...", file=sys.stderr, flush=True)
                rows.append(
                    {
                        "engine": name,
                        "threads": threads,
                        "size_bytes": size,
                        "model_file_bytes": model_bytes,
                        **metrics,
                        **measure(make(threads), texts, repeat),
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
        "repeat": repeat,
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
        f"Timing: {result['texts']} texts from data/test.parquet, tokenization included, fastest of "
        f"{result.get('repeat', 1)} pass(es); accuracy: all "
        f"{result['test_texts']} test texts. CPU {machine['processor']} "
        f"({machine['cpu_count']} logical cores; 'all' = {result['all_threads']} threads); torch "
        f"{machine['torch']}, onnxruntime {machine['onnxruntime']}. Speedups are against the teacher with the "
        "same threads.",
        "",
        "Quality, on all test texts: accuracy (batches of 64); *alone = batch*: labels that stay the same when each "
        "text is predicted alone, and the largest probability change; *= fp32*: labels equal to the fp32 ONNX "
        "export's.",
        "",
        "| engine | threads | model file (MB) | folder (MB) | test accuracy | alone = batch (%) | max Δp alone "
        "| = fp32 (%) | ex/s b=1 | ex/s b=64 | p50 ms b=1 | p99 ms b=1 | speedup b=1 | speedup b=64 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["results"]:
        same_as_fp32 = row.get("same_label_as_onnx_fp32")
        lines.append(
            f"| {row['engine']} | {row['threads']} | {row['model_file_bytes'] / 1e6:.2f} "
            f"| {row['size_bytes'] / 1e6:.2f} | {100 * row['accuracy']:.2f} "
            f"| {100 * row['same_label_alone']:.2f} | {row['max_prob_change_alone']:.1e} "
            f"| {'-' if same_as_fp32 is None else f'{100 * same_as_fp32:.2f}'} "
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
    parser.add_argument("--repeat", type=int, default=1, help="timing passes per setting; the fastest is kept")
    parser.add_argument(
        "--dynamic-int8",
        action="store_true",
        help="also measure onnxruntime's dynamic int8 (the previous --quantize int8; batch-dependent)",
    )
    args = parser.parse_args()
    if args.texts < 1 or args.repeat < 1:
        parser.error("--texts and --repeat must be >= 1")
    for needed in ("teacher", "student"):
        if not (args.run_dir / needed).is_dir():
            parser.error(f"{args.run_dir}: no {needed}/ folder; pass a finished run directory")
    result = run(args.run_dir, args.texts, args.dynamic_int8, args.repeat)
    text = markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.run_dir.resolve().name
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {args.out / name}.json and .md")


if __name__ == "__main__":
    main()
