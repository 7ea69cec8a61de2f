"""Calibration and selective prediction on the harness datasets (issue 22): does the default student's test ECE
fall to 0.05 or below after temperature scaling, and does the threshold chosen for 95% held-out accuracy keep
test accuracy on the answered texts at 94% or above, and at what coverage?

Each cell (dataset x seed) is the default pipeline at N labeled texts per class, with a validation split of V more
labeled texts per class carved from the same training file (disjoint from the labeled sample and from the transfer
pool: a user who calibrates labels N + V texts per class), the rest of the training file as unlabeled transfer
texts (`--transfer` of them), and the dataset's test file, only reported. The temperature and the threshold are
fitted on the validation split by the evaluate stage (`gendistill.evaluation.calibration`); nothing here looks at
the test set except to report it.

    python benchmarks/calibration.py --data-dir ../shared/data --datasets sst2 ag_news --seeds 0 1 2 \\
        --teacher models/all-MiniLM-L6-v2

`--validation-from sentences` carves the validation split from the training rows that are whole sentences (they
end with . ! or ?): a temperature and threshold are only as good as the match between the split they are fitted on
and the texts the model will answer, and some training files are not made of those texts. SST-2's (GLUE) training
file is the treebank's phrases, most of them sub-sentence fragments (median 7 words), while the task, and its dev
and test files, are whole sentences (GLUE, Wang et al. 2018); a user calibrating an SST-2 classifier labels
sentences. The labeled sample and the transfer pool still come from the whole training file.

`--validation-from sentences-disjoint` also drops from the rest of the training file every row that is part of a
validation sentence. SST-2's training phrases are the nodes of its sentences' parse trees, so a validation
sentence's own phrases (about 3.5 each) were in the labeled sample's and the transfer pool's file: the student had
been distilled on pieces of the texts its temperature was then fitted on, found them easier than new sentences,
and the temperature came out too small (seeds 0-2: 2.8, 2.2, 1.4 fitted on validation, where the test set's own
best would be 3.3, 3.0, 2.2). A user's held-out sentences share no phrases with their unlabeled pool.

`--force-evaluate` re-runs the evaluate stage of cached cells (nothing is retrained): how the numbers of finished
cells move under a change to the calibration, on the same models.

`--validation-from official` draws the validation split from the dataset's own validation.jsonl instead (V per
class, seeded) and leaves the whole training file to the labeled sample and the pool. Where the training file holds
paraphrases of one another (CLINC150's crowd workers wrote many variants of each request), a split carved from it
has its near-twins in the transfer pool the student learnt from, and is easier than new texts: on clinc150 seed 0,
a carved split put the student at 91.0% where the dataset's validation and test files put it at 86.9% and 87.2%,
and the 95% threshold fitted on it answered test texts at 92.6%.

`--accuracy-guarantee P` also re-runs the evaluate stage of each finished cell with `evaluate.accuracy_guarantee=P`
(nothing is retrained) and records that threshold's coverage and test accuracy beside the point estimate's
(`guaranteed_*` keys).

Outputs under --out (default benchmarks/results/calibration): runs/<dataset>-s<seed>.json (every model's
calibration and selective blocks and test accuracy) and summary.json (means over seeds per dataset and model).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gendistill
from gendistill.config import build_config

MODELS = ("teacher", "student", "baseline_student")
FIGURES = ("accuracy", "ece_before", "ece_after", "brier_before", "brier_after", "temperature")
SELECTIVE = (
    "threshold",
    "coverage_heldout",
    "accuracy_heldout",
    "answered_heldout",
    "accuracy_heldout_lower",
    "coverage_test",
    "accuracy_test",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with <dataset>/{train,test}.jsonl")
    parser.add_argument("--datasets", nargs="+", default=["sst2", "ag_news"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--per-class", type=int, default=64, help="labeled training texts per class (N)")
    parser.add_argument("--validation-per-class", type=int, default=64, help="labeled validation texts per class")
    parser.add_argument("--transfer", type=int, default=4000, help="unlabeled transfer texts from the train pool")
    parser.add_argument("--target-accuracy", type=float, default=0.95)
    parser.add_argument(
        "--validation-from", choices=["any", "sentences", "sentences-disjoint", "official"], default="any"
    )
    parser.add_argument("--accuracy-guarantee", type=float, default=None)
    parser.add_argument(
        "--force-evaluate",
        action="store_true",
        help="re-run the evaluate stage of cached cells (after a change to how calibration is fitted; nothing is "
        "retrained)",
    )
    parser.add_argument("--teacher", required=True, help="HF id or folder of the teacher encoder")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="config overrides section.key=value")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/calibration"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache/calibration"))
    return parser.parse_args(argv)


# a whole sentence ends with . ! or ?, maybe followed by a closing quote or bracket (PTB-tokenized: `` '' -rrb-)
SENTENCE_END = re.compile(r"[.!?]( (''|\"|'|\)|-rrb-))?$")


def per_class_sample(
    rows: list[dict[str, Any]], per_class: int, seed: int, eligible: Callable[[dict[str, Any]], Any] = bool
) -> set[int]:
    """Indices of `per_class` eligible rows of each class (all of a smaller class), seeded."""
    by_class: dict[Any, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        if eligible(row):
            by_class[row["label"]].append(index)
    rng = random.Random(seed)
    return {index for indices in by_class.values() for index in rng.sample(indices, min(per_class, len(indices)))}


def carve(
    folder: Path, out: Path, per_class: int, seed: int, sentences_only: bool = False, disjoint: bool = False
) -> dict[str, Path]:
    """train.jsonl split into validation (`per_class` rows of each class, seeded; with `sentences_only`, drawn from
    the rows that end like a sentence) and the rest (with `disjoint`, less every row that is part of a validation
    text), written under `out`; the test file and labels.json are referenced where they are."""
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text(encoding="utf-8").splitlines() if line]
    held = per_class_sample(rows, per_class, seed, lambda row: not sentences_only or SENTENCE_END.search(row["text"]))
    left_out = set(held)
    if disjoint:  # every piece of a validation text (SST-2's phrases of its sentences) leaves the training file too
        validation = [rows[index]["text"] for index in held]
        left_out |= {index for index, row in enumerate(rows) if any(row["text"] in text for text in validation)}
    out.mkdir(parents=True, exist_ok=True)
    paths = {"train": out / "train.jsonl", "validation": out / "validation.jsonl"}
    for name, keep in (("train", lambda i: i not in left_out), ("validation", lambda i: i in held)):
        text = "".join(json.dumps(row) + "\n" for i, row in enumerate(rows) if keep(i))
        paths[name].write_text(text, encoding="utf-8")
    return {**paths, "test": folder / "test.jsonl", "labels": folder / "labels.json"}


def official(folder: Path, out: Path, per_class: int, seed: int) -> dict[str, Path]:
    """The validation split drawn from the dataset's own validation.jsonl (`per_class` rows of each class, seeded),
    written under `out`; the whole train.jsonl stays the labeled sample's and the pool's file."""
    source = folder / "validation.jsonl"
    if not source.exists():
        raise SystemExit(f"{source}: --validation-from official needs the dataset's validation.jsonl")
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line]
    held = sorted(per_class_sample(rows, per_class, seed))
    out.mkdir(parents=True, exist_ok=True)
    validation = out / "validation.jsonl"
    validation.write_text("".join(json.dumps(rows[index]) + "\n" for index in held), encoding="utf-8")
    return {
        "train": folder / "train.jsonl",
        "validation": validation,
        "test": folder / "test.jsonl",
        "labels": folder / "labels.json",
    }


def cell_config(args: argparse.Namespace, files: dict[str, Path], seed: int) -> dict[str, Any]:
    fine_tuned = {"epochs": 10 if args.per_class >= 32 else 20, "learning_rate": 1e-4}  # as benchmarks/lowdata.py
    source = {"type": "file", "path": str(files["train"]), "exclude_labeled": True, "n": args.transfer}
    return {
        "data": {
            "train": str(files["train"]),
            "validation": str(files["validation"]),
            "test": str(files["test"]),
            "label_names": str(files["labels"]),
            "per_class": args.per_class,
            "seed": seed,
        },
        "teacher": {"model": args.teacher, **fine_tuned},
        "transfer": {"sources": [source]},
        "student": {"baseline": True},
        "evaluate": {"speed_examples": 256, "target_accuracy": args.target_accuracy},
        "seed": seed,
    }


def cell_row(report: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for model in MODELS:
        entry = report.get(model) or {}
        calibration, selective = entry.get("calibration") or {}, entry.get("selective") or {}
        row[model] = {
            "accuracy": entry.get("accuracy"),
            **{key: calibration.get(key) for key in FIGURES if key != "accuracy"},
            **{key: selective.get(key) for key in SELECTIVE},
        }
    return row


GUARANTEED = ("guaranteed_threshold", "guaranteed_coverage_test", "guaranteed_accuracy_test")


def summary_key(row: dict[str, Any]) -> str:
    """The dataset's name, with how its validation split was drawn when not from every training row."""
    source = row.get("validation_from", "any")
    size = row.get("validation_per_class", row.get("per_class"))
    notes = [f"validation from {source}"] if source != "any" else []
    if size != row.get("per_class"):  # a validation split larger or smaller than the labeled sample
        notes.append(f"{size} validation texts per class")
    return row["dataset"] if not notes else f"{row['dataset']} ({', '.join(notes)})"


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for dataset in dict.fromkeys(summary_key(row) for row in rows):
        cells = [row for row in rows if summary_key(row) == dataset]
        summary[dataset] = {"seeds": [row["seed"] for row in cells]}
        guarantees = {row.get("accuracy_guarantee") for row in cells} - {None}
        if guarantees:
            summary[dataset]["accuracy_guarantee"] = sorted(guarantees)
        for model in MODELS:
            means = {}
            for key in (*FIGURES, *SELECTIVE, *(GUARANTEED if guarantees else ())):
                values = [row["models"][model][key] for row in cells if row["models"][model].get(key) is not None]
                means[key] = statistics.mean(values) if values else None
            summary[dataset][model] = means
    return summary


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    rows = []
    for dataset in args.datasets:
        for seed in args.seeds:
            sentences = args.validation_from.startswith("sentences")
            disjoint = args.validation_from == "sentences-disjoint"
            suffix = f"-{args.validation_from}" if args.validation_from != "any" else ""
            # the cell's folder names both sizes; a run file names the validation size when it is not N's
            size = f"-v{args.validation_per_class}" if args.validation_per_class != args.per_class else ""
            path = runs / f"{dataset}-s{seed}{suffix}{size}.json"
            if path.exists():  # resumable: a finished cell is read back
                rows.append(json.loads(path.read_text()))
                continue
            cell = args.cache / f"{dataset}-n{args.per_class}-v{args.validation_per_class}-s{seed}{suffix}"
            if args.validation_from == "official":
                files = official(args.data_dir / dataset, cell / "data", args.validation_per_class, seed)
            else:
                files = carve(
                    args.data_dir / dataset, cell / "data", args.validation_per_class, seed, sentences, disjoint
                )
            config = build_config(cell_config(args, files, seed), args.overrides)
            print(f"[{dataset} seed={seed}] running", flush=True)
            force = ["evaluate"] if args.force_evaluate else None
            report = gendistill.Run(config, cell / "run").run(force=force).model_dump(mode="json")
            row = {
                "dataset": dataset,
                "seed": seed,
                "per_class": args.per_class,
                "validation_per_class": args.validation_per_class,
                "validation_from": args.validation_from,
                "transfer": args.transfer,
                "target_accuracy": args.target_accuracy,
                **({"overrides": args.overrides} if args.overrides else {}),
                "models": cell_row(report),
            }
            if args.accuracy_guarantee is not None:  # the same models, the threshold chosen with the guarantee
                override = [*args.overrides, f"evaluate.accuracy_guarantee={args.accuracy_guarantee}"]
                guaranteed = gendistill.Run(build_config(cell_config(args, files, seed), override), cell / "run")
                again = cell_row(guaranteed.run(force=["changed"]).model_dump(mode="json"))
                row["accuracy_guarantee"] = args.accuracy_guarantee
                for model in MODELS:
                    for key in ("threshold", "coverage_test", "accuracy_test"):
                        row["models"][model][f"guaranteed_{key}"] = again[model][key]
            path.write_text(json.dumps(row, indent=2) + "\n")
            rows.append(row)
            student = row["models"]["student"]
            print(f"[{dataset} seed={seed}] student {json.dumps(student)}", flush=True)
    summary = summarize(rows)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({"command": " ".join(sys.argv), "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
