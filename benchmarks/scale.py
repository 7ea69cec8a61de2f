"""Peak memory and wall time of the label and distill stages as the transfer set grows (10k, 100k, 1M texts),
measured side by side in one invocation, each size in a fresh process so peak RSS is its own.

    python benchmarks/scale.py --sizes 10000 100000 1000000 --out benchmarks/results/scale

Texts are synthesized (4 topics over a 6,000-word vocabulary, 8-20 words each); the teacher is a tiny BERT
(2 layers, hidden 64) fine-tuned on 400 labeled texts, the student a bag-of-embeddings (1 epoch, batch 256), so the
figures measure the pipeline's data path (reading shards, labeling, tokenizing, training), not a big model.
Preparation (data, teacher, transfer set) runs in its own process and is not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TOPICS = 4
WORDS = [f"w{i}" for i in range(6000)]


def synthetic_text(rng: random.Random, topic: int) -> str:
    own = WORDS[topic * 1000 : (topic + 1) * 1000]
    common = WORDS[4000:]
    return " ".join(rng.choice(own) if rng.random() < 0.4 else rng.choice(common) for _ in range(rng.randint(8, 20)))


def write_task(work: Path, size: int) -> None:
    rng = random.Random(0)
    labeled = [{"text": synthetic_text(rng, t), "label": f"topic{t}"} for t in range(TOPICS) for _ in range(125)]
    rng.shuffle(labeled)
    (work / "task").mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", labeled[:400]), ("test", labeled[400:])):
        (work / "task" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = work / "task" / f"unlabeled-{size}.parquet"
    if not path.exists():
        rng = random.Random(size)
        texts = [synthetic_text(rng, rng.randrange(TOPICS)) for _ in range(size)]
        pq.write_table(pa.table({"text": texts}), path)


def build_teacher(work: Path) -> Path:
    root = work / "tiny_bert"
    if (root / "config.json").exists():
        return root
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root.mkdir(parents=True)
    rng = random.Random(1)
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator([synthetic_text(rng, rng.randrange(TOPICS)) for _ in range(20000)], vocab_size=8000)
    wordpiece.save_model(str(root))
    tokenizer = BertTokenizerFast.from_pretrained(root)
    tokenizer.save_pretrained(root)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(root)
    return root


def config_for(work: Path, size: int) -> dict:
    return {
        "data": {"train": str(work / "task" / "train.jsonl"), "test": str(work / "task" / "test.jsonl")},
        "teacher": {
            "model": str(work / "tiny_bert"),
            "epochs": 3,
            "learning_rate": 1e-3,
            "max_length": 32,
            "label_batch_size": 512,
        },
        "transfer": {
            "sources": [{"type": "file", "path": str(work / "task" / f"unlabeled-{size}.parquet")}],
            "shard_size": 10000,
            "filters": {"min_words": 1},
        },
        "student": {"arch": "bag", "init": "random", "epochs": 1, "batch_size": 256, "baseline": False},
        "device": "cpu",
    }


def prepare(work: Path, size: int) -> Path:
    """Data, teacher (shared across sizes) and the transfer set of `size` texts, in work/runs/SIZE."""
    from gendistill import Run
    from gendistill.config import build_config

    write_task(work, size)
    build_teacher(work)
    base = Run(build_config(config_for(work, size)), work / "runs" / "base")
    base.run(until="teacher")
    run = Run(build_config(config_for(work, size)), work / "runs" / str(size))
    run.adopt(work / "runs" / "base", ("data", "teacher"))
    run.run(until="transfer")
    return run.dir


def measure(work: Path, size: int) -> dict:
    """In this process: rerun label and distill from scratch; wall seconds and peak RSS."""
    from gendistill import Run
    from gendistill.config import build_config

    run = Run(build_config(config_for(work, size)), work / "runs" / str(size))
    start = time.perf_counter()
    seconds = {}
    for stage in ("label", "distill"):
        began = time.perf_counter()
        run.run(only=stage, force=[stage])
        seconds[stage] = round(time.perf_counter() - began, 1)
    kept = json.loads((run.dir / "transfer" / "summary.json").read_text())["kept"]
    return {
        "texts": kept,
        "seconds": round(time.perf_counter() - start, 1),
        "stage_seconds": seconds,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/cache/scale"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GENDISTILL_PROGRESS", "0")
    if args.prepare:
        prepare(args.work, args.prepare)
        return
    if args.one:
        print(json.dumps(measure(args.work, args.one)))
        return
    results = {}
    for size in args.sizes:
        subprocess.run([sys.executable, __file__, "--work", str(args.work), "--prepare", str(size)], check=True)
        output = subprocess.run(
            [sys.executable, __file__, "--work", str(args.work), "--one", str(size)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[str(size)] = json.loads(output.strip().splitlines()[-1])
        print(f"{size:>9,} texts: {results[str(size)]}", flush=True)
    smallest, largest = results[str(min(args.sizes))], results[str(max(args.sizes))]
    ratios = {
        "peak_rss_largest_over_smallest": round(largest["peak_rss_mb"] / smallest["peak_rss_mb"], 2),
        "seconds_per_text_largest_over_smallest": round(
            (largest["seconds"] / largest["texts"]) / (smallest["seconds"] / smallest["texts"]), 2
        ),
    }
    print(json.dumps(ratios))
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/scale.py --sizes " + " ".join(map(str, args.sizes))
    (args.out / "summary.json").write_text(
        json.dumps(
            {**{k: {"peak_rss_mb": v["peak_rss_mb"], "seconds": v["seconds"]} for k, v in results.items()}}, indent=2
        )
        + "\n"
    )
    (args.out / "details.json").write_text(
        json.dumps({"command": command, "results": results, "ratios": ratios}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
