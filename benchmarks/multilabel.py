"""Multi-label harness (issue 23): teacher, distilled student, labeled-only baseline, SetFit and model2vec on a real
multi-label dataset, side by side, per (N labeled texts per label, seed).

Each cell draws the labeled sample with gendistill's own per-label draw (at least N rows for every label, rarest
label first: `data.per_class` on a multi-label file), and a validation sample the same way from the dataset's
validation split (the per-label thresholds of every arm are tuned on it, never on the test file: a user labels
about 2N texts per label; `--validation-per-label` sets another number where the validation split is too small).
The rest of the training file, labels dropped, is the student's transfer set.

  teacher    all-MiniLM-L6-v2 fine-tuned with one sigmoid per label (`hf_encoder`, BCE)
  student    the default student distilled on the teacher's per-label probabilities over `--transfer` pool texts
  baseline   the same network on the labeled texts alone (BCE)
  setfit     SetFit with `multi_target_strategy="one-vs-rest"` on the same labeled texts and encoder
  model2vec  static embeddings distilled from the same encoder (`model2vec.distill`, PCA 256), then one logistic
             regression per label (scikit-learn's OneVsRestClassifier)

    python benchmarks/multilabel.py --data-dir benchmarks/data --dataset goemotions_multilabel --per-label 8 32 \\
        --seeds 0 1 2 --teacher models/all-MiniLM-L6-v2

Outputs under --out (default benchmarks/results/multilabel): runs/<dataset>-n<N>-s<seed>.json (every arm's
micro/macro-F1, subset accuracy, Hamming loss) and summary.json: {dataset: {N: {arm: mean micro-F1}}}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import gendistill
from gendistill.config import build_config
from gendistill.data.stored import read_task
from gendistill.data.task import load_task
from gendistill.evaluation.multilabel import decide, indicator, scores, tune_thresholds
from gendistill.pipeline.layout import RunLayout

ARMS = ("teacher", "student", "baseline_student", "setfit", "model2vec")
HEADLINE = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/data"))
    parser.add_argument("--dataset", default="goemotions_multilabel")
    parser.add_argument("--per-label", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--validation-per-label",
        type=int,
        default=None,
        help="validation rows per label (default N; GoEmotions' validation split has 13 rows of its rarest label)",
    )
    parser.add_argument("--transfer", type=int, default=8000, help="unlabeled pool texts the student distils on")
    parser.add_argument("--teacher", required=True, help="HF id or folder of the encoder (teacher and peers)")
    parser.add_argument(
        "--teacher-kind",
        default="hf_encoder",
        choices=["hf_encoder", "setfit"],
        help="the pipeline's teacher: a fine-tuned encoder (sigmoid per label) or SetFit one-vs-rest",
    )
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--summary-only", action="store_true", help="run nothing: summary.json from --out/runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multilabel"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache/multilabel"))
    return parser.parse_args(argv)


def validation_sample(folder: Path, per_label: int, seed: int, out: Path) -> Path:
    """N rows per label from the dataset's validation split (gendistill's per-label draw), as a JSONL file."""
    task = load_task(
        str(folder / "validation.jsonl"), label_names=str(folder / "labels.json"), per_class=per_label, seed=seed
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"text": text, "label": labels} for text, labels in zip(task.train.texts, task.train.labels, strict=True)]
    out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return out


def pipeline_config(args: argparse.Namespace, folder: Path, validation: Path, per_label: int, seed: int) -> dict:
    source = {"type": "file", "path": str(folder / "train.jsonl"), "exclude_labeled": True, "n": args.transfer}
    return {
        "data": {
            "train": str(folder / "train.jsonl"),
            "validation": str(validation),
            "test": str(folder / "test.jsonl"),
            "label_names": str(folder / "labels.json"),
            "per_class": per_label,
            "seed": seed,
            "multi_label": True,
        },
        "teacher": teacher_config(args, per_label),
        "transfer": {"sources": [source]},
        "student": {"baseline": True},
        "evaluate": {"speed_examples": 256},
        "seed": seed,
    }


def teacher_config(args: argparse.Namespace, per_label: int) -> dict[str, Any]:
    if args.teacher_kind == "setfit":  # SetFit's few-shot settings, as the setfit arm trains it
        return {"kind": "setfit", "model": args.teacher}
    # as benchmarks/lowdata.py fine-tunes its teacher at these sizes
    return {"model": args.teacher, "epochs": 10 if per_label >= 32 else 20, "learning_rate": 1e-4}


def peer_scores(
    name: str, probabilities: Any, task: Any, validation: Any, seconds: float, params: int
) -> dict[str, Any]:
    """A peer's test scores with per-label thresholds tuned on the validation sample, as the pipeline's arms."""
    n = len(task.label_names)
    thresholds = tune_thresholds(indicator(validation.labels, n), probabilities(validation.texts))
    predicted = decide(probabilities(task.test.texts), thresholds)
    result = scores(indicator(task.test.labels, n), predicted, task.label_names)
    return {
        **{key: result[key] for key in HEADLINE},
        "params": params,
        "train_seconds": round(seconds, 1),
        "thresholds": thresholds,
        "arm": name,
    }


def train_setfit(encoder: str, texts: list[str], label_sets: list[list[int]], n: int, seed: int) -> tuple:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    started = time.perf_counter()
    model = SetFitModel.from_pretrained(encoder, multi_target_strategy="one-vs-rest")
    arguments = TrainingArguments(
        num_iterations=20,
        batch_size=16,
        num_epochs=1,
        seed=seed,
        report_to="none",
        show_progress_bar=False,
        save_strategy="no",
    )  # as benchmarks/peers.py trains SetFit
    targets = [[int(i in row) for i in range(n)] for row in label_sets]
    Trainer(model=model, args=arguments, train_dataset=Dataset.from_dict({"text": texts, "label": targets})).train()
    seconds = time.perf_counter() - started
    params = sum(p.numel() for p in model.model_body.parameters()) + sum(
        e.coef_.size + e.intercept_.size for e in model.model_head.estimators_ if hasattr(e, "coef_")
    )

    def probabilities(batch: list[str]) -> np.ndarray:
        return np.asarray(model.predict_proba(batch, batch_size=64, as_numpy=True, show_progress_bar=False))

    return probabilities, seconds, int(params)


def train_model2vec(encoder: str, texts: list[str], label_sets: list[list[int]], n: int, seed: int) -> tuple:
    from model2vec.distill import distill
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    started = time.perf_counter()
    static = distill(model_name=encoder, pca_dims=256)
    targets = indicator(label_sets, n)
    head = OneVsRestClassifier(LogisticRegression(max_iter=2000, random_state=seed))
    head.fit(static.encode(texts, show_progress_bar=False), targets)
    seconds = time.perf_counter() - started
    params = int(np.prod(static.embedding.shape)) + sum(
        e.coef_.size + e.intercept_.size for e in head.estimators_ if hasattr(e, "coef_")
    )

    def probabilities(batch: list[str]) -> np.ndarray:
        return head.predict_proba(static.encode(batch, show_progress_bar=False))

    return probabilities, seconds, int(params)


PEERS = {"setfit": train_setfit, "model2vec": train_model2vec}


def run_cell(args: argparse.Namespace, per_label: int, seed: int) -> dict[str, Any]:
    folder = args.data_dir / args.dataset
    kind = "" if args.teacher_kind == "hf_encoder" else f"-{args.teacher_kind}"
    cell = args.cache / f"{args.dataset}-n{per_label}-s{seed}{kind}"
    validation_per_label = args.validation_per_label or per_label
    validation_path = validation_sample(folder, validation_per_label, seed, cell / "validation.jsonl")
    config = build_config(pipeline_config(args, folder, validation_path, per_label, seed))
    started = time.perf_counter()
    report = gendistill.Run(config, cell / "run").run().model_dump(mode="json")
    row: dict[str, Any] = {
        "dataset": args.dataset,
        "per_label": per_label,
        "seed": seed,
        "teacher_kind": args.teacher_kind,
        "transfer": args.transfer,
        "validation_per_label": validation_per_label,
        "pipeline_seconds": round(time.perf_counter() - started, 1),
        "labeled_texts": report["train_examples"],
        "arms": {},
    }
    for arm in ("teacher", "student", "baseline_student"):
        entry = report.get(arm) or {}
        row["arms"][arm] = {key: entry.get(key) for key in (*HEADLINE, "params", "thresholds")}
    layout_task = read_task(RunLayout(cell / "run"))  # the labeled sample, validation and test the pipeline used
    n = len(layout_task.label_names)
    for peer in (arm for arm in args.arms if arm in PEERS):
        print(f"[{args.dataset} N={per_label} seed={seed}] {peer}", flush=True)
        probabilities, seconds, params = PEERS[peer](
            args.teacher, layout_task.train.texts, layout_task.train.labels, n, seed
        )
        row["arms"][peer] = peer_scores(peer, probabilities, layout_task, layout_task.validation, seconds, params)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """{dataset: {N: {arm: mean micro-F1, "teacher_kind", "seeds"}}}. With a SetFit teacher the `setfit` arm is the
    teacher itself (the same model, labeled sample, encoder and settings), so its score is the teacher's. A dataset
    run under two teacher kinds keeps the non-default kind apart as "<dataset> (teacher KIND)"."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        kinds.setdefault(row["dataset"], set()).add(row.get("teacher_kind", "hf_encoder"))
    summary: dict[str, Any] = {}
    for row in rows:
        kind = row.get("teacher_kind", "hf_encoder")
        apart = len(kinds[row["dataset"]]) > 1 and kind != "hf_encoder"
        key = f"{row['dataset']} (teacher {kind})" if apart else row["dataset"]
        summary.setdefault(key, {}).setdefault(str(row["per_label"]), []).append(row)
    out: dict[str, Any] = {}
    for dataset, sizes in summary.items():
        out[dataset] = {}
        for size, cells in sizes.items():
            kind = cells[0].get("teacher_kind", "hf_encoder")
            arms = {arm for cell in cells for arm in cell["arms"]}
            means = {
                arm: statistics.mean(cell["arms"][arm]["micro_f1"] for cell in cells if arm in cell["arms"])
                for arm in ARMS
                if arm in arms
            }
            if kind == "setfit" and "setfit" not in means and "teacher" in means:
                means["setfit"] = means["teacher"]
            out[dataset][size] = {**means, "teacher_kind": kind, "seeds": sorted(cell["seed"] for cell in cells)}
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.summary_only:  # every finished cell under --out, whatever command wrote it
        rows = [json.loads(path.read_text()) for path in sorted(runs.glob("*.json"))]
        (args.out / "summary.json").write_text(json.dumps(summarize(rows), indent=2) + "\n")
        print(json.dumps(summarize(rows), indent=2))
        return
    for per_label in args.per_label:
        for seed in args.seeds:
            kind = "" if args.teacher_kind == "hf_encoder" else f"-{args.teacher_kind}"
            path = runs / f"{args.dataset}-n{per_label}-s{seed}{kind}.json"
            if path.exists():  # resumable: a finished cell is read back
                rows.append(json.loads(path.read_text()))
                continue
            print(f"[{args.dataset} N={per_label} seed={seed}] pipeline", flush=True)
            row = run_cell(args, per_label, seed)
            row["command"] = " ".join(sys.argv)
            path.write_text(json.dumps(row, indent=2) + "\n")
            rows.append(row)
            print(json.dumps({arm: round(v["micro_f1"], 4) for arm, v in row["arms"].items()}), flush=True)
            (args.out / "summary.json").write_text(json.dumps(summarize(rows), indent=2) + "\n")
    (args.out / "summary.json").write_text(json.dumps(summarize(rows), indent=2) + "\n")
    print(json.dumps(summarize(rows), indent=2))


if __name__ == "__main__":
    main()
