"""Which round's student should agreement rounds keep? Compared on dev agreement over finished rounds.py cells.

The rounds stage measures each round's student on a held-out slice of teacher-labeled pool texts (`rounds.holdout`,
200 in the benchmarks, 500 by default) and keeps one. A few hundred texts make that measurement noisy (a binomial
standard error of 2 points at 88% on 200 texts), and the rounds only ever add teacher labels, so a rule that keeps
the round that happened to score best may keep an early one by chance. Candidate rules, applied to a cell's
per-round held-out agreement:

  R0  the earliest round whose held-out agreement is the best by `min_gain` (the stage's rule until now)
  R1  the last round run
  R2  the latest round whose held-out agreement is not below the best round's by more than one standard error of
      their paired difference on the same held-out texts

Criterion: the kept student's agreement with the teacher on `--dev-texts` pool texts that no arm of the cell
trained on (benchmarks/agreement.py: the same dev texts rounds.py scored its arms on, when the arms match), never
the test file; each round's test accuracy is only reported.

    python benchmarks/round_keep.py --cells /work/bench-cache-nosif/{banking77,clinc150,goemotions,sst2}/n16-s*/rounds

Output: --out (default benchmarks/results/rounds/keep_rule.json): per cell, each round's held-out and dev
agreement and test accuracy and the round each rule keeps; per dataset and overall, the mean dev agreement (and
test accuracy) of each rule's kept student.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import yaml

import gendistill
from gendistill.config import build_config
from gendistill.data.stored import read_task
from gendistill.data.tables import read_table
from gendistill.io import write_json
from gendistill.pipeline.layout import RunLayout
from gendistill.students.classifier import StudentClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agreement import dev_agreement, normalized  # noqa: E402 - benchmarks/agreement.py
from rounds import trained_texts  # noqa: E402 - benchmarks/rounds.py

RULES = ("R0", "R1", "R2")


def kept_rounds(correct: np.ndarray, min_gain: float) -> dict[str, int]:
    """The round each rule keeps, from `correct` (rounds x held-out texts, 1 where the round's student agrees with
    the teacher)."""
    agreement = correct.mean(axis=1)
    best = 0
    for number in range(1, len(agreement)):  # R0: as the stage's loop, a rise must clear min_gain
        if agreement[number] >= agreement[best] + min_gain:
            best = number
    top = int(np.argmax(agreement))
    within = [
        number
        for number in range(len(agreement))
        if agreement[number] >= agreement[top] - paired_standard_error(correct[number], correct[top])
    ]
    return {"R0": best, "R1": len(agreement) - 1, "R2": max(within)}


def paired_standard_error(a: np.ndarray, b: np.ndarray) -> float:
    difference = a.astype(float) - b.astype(float)
    return float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0


def cell_result(cell: Path, dev_texts: int) -> dict[str, Any]:
    shared_dir = cell / "shared"
    shared = gendistill.Run(build_config(yaml.safe_load((shared_dir / "config.yaml").read_text())), shared_dir)
    rounds_dir = next(path for path in sorted(cell.glob("rounds-*")) if (path / "rounds").is_dir())
    arms = [path for path in cell.iterdir() if path.is_dir() and path.name != "shared"]
    layout = RunLayout(rounds_dir)
    ledger = json.loads(layout.rounds_ledger.read_text())
    report = json.loads((rounds_dir / "report.json").read_text())
    students = {0: layout.student} | {
        int(path.parent.name.split("-")[1]): path for path in sorted(layout.rounds.glob("round-*/student"))
    }
    holdout = pq.read_table(layout.rounds / "holdout.parquet")
    texts = holdout.column("text").to_pylist()
    teacher = np.stack(holdout.column("logits").to_numpy(zero_copy_only=False)).argmax(axis=1)
    correct = np.stack(
        [
            StudentClassifier.from_pretrained(students[number]).logits(texts, 256).argmax(axis=1) == teacher
            for number in sorted(students)
        ]
    )
    recorded = [row["agreement"] for row in ledger["history"]]
    assert np.allclose(correct.mean(axis=1), recorded, atol=1e-6), (cell, correct.mean(axis=1), recorded)
    data = shared.config.data
    pool = normalized(read_table(data.train)[data.text_column])
    trained = set().union(*(trained_texts(arm) for arm in arms))
    test = normalized(read_task(shared.layout).test.texts)
    dev = dev_agreement(
        shared, {str(n): path for n, path in students.items()}, pool, trained | test, dev_texts, data.seed
    )
    test_accuracy = [row.get("accuracy") for row in report["rounds"]["history"]]
    kept = kept_rounds(correct, shared_config_min_gain(rounds_dir))
    return {
        "cell": str(cell),
        "dataset": data.train.split("/")[-2],
        "seed": data.seed,
        "holdout_texts": len(texts),
        "holdout_agreement": [round(float(v), 4) for v in correct.mean(axis=1)],
        "dev_agreement": [dev["dev_agreement"][str(n)] for n in sorted(students)],
        "dev_texts": dev["dev_texts"],
        "test_accuracy": test_accuracy,
        "kept": kept,
        "stage_kept": ledger["chosen_round"],
    }


def shared_config_min_gain(rounds_dir: Path) -> float:
    return float(yaml.safe_load((rounds_dir / "config.yaml").read_text())["rounds"].get("min_gain", 0.002))


def summarize(cells: list[dict[str, Any]]) -> dict[str, Any]:
    def means(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            rule: {
                "dev_agreement": statistics.mean(row["dev_agreement"][row["kept"][rule]] for row in rows),
                "test_accuracy": statistics.mean(row["test_accuracy"][row["kept"][rule]] for row in rows),
            }
            for rule in RULES
        }

    out: dict[str, Any] = {
        dataset: means([row for row in cells if row["dataset"] == dataset])
        for dataset in dict.fromkeys(row["dataset"] for row in cells)
    }
    out["all cells"] = means(cells)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", type=Path, required=True, help="rounds.py cell folders (.../rounds)")
    parser.add_argument("--dev-texts", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rounds/keep_rule.json"))
    args = parser.parse_args(argv)
    cells = []
    for cell in args.cells:
        row = cell_result(cell, args.dev_texts)
        print(json.dumps({k: row[k] for k in ("dataset", "seed", "dev_agreement", "kept", "stage_kept")}), flush=True)
        cells.append(row)
    summary = summarize(cells)
    write_json(args.out, {"summary": summary, "cells": cells, "command": "python " + " ".join(sys.argv)})
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
