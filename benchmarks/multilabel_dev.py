"""Dev choice of the multi-label student's settings (issue 23): each variant re-distils the student of a finished
`benchmarks/multilabel.py` cell (its teacher, transfer set and teacher labels are reused, `Run.adopt`) and is
scored by the best validation micro-averaged precision over its epochs, on the cell's validation sample (labeled
texts apart from the training sample). The test micro-F1 is only reported.

Why: on GoEmotions at 8 labeled texts per label the default student (20 epochs, temperature 2) was still rising
on validation at its last epoch, so the epoch budget and the temperature were the first settings to check.

    python benchmarks/multilabel_dev.py --cache benchmarks/cache/multilabel --seeds 0 1 \\
        --out benchmarks/results/multilabel/dev_choice

Run from the folder the cells' configs were written from (their data paths are relative). Writes
<out>/s<seed>-<variant>.json: the best validation micro-AP and its epoch, the test micro-F1 of student and teacher.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gendistill
from gendistill.config import load_config

VARIANTS = {"e60": ["student.epochs=60"], "e60_t1": ["student.epochs=60", "student.temperature=1.0"]}
REUSED = ("data", "teacher", "generator", "transfer", "label")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache/multilabel"))
    parser.add_argument("--cell", default="goemotions_multilabel-n8-s{seed}-setfit", help="cell folder pattern")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multilabel/dev_choice"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        cell = args.cache / args.cell.format(seed=seed)
        for name in args.variants:
            path = args.out / f"s{seed}-{name}.json"
            if path.exists():  # resumable: a finished variant is kept
                continue
            config = load_config(cell / "run" / "config.yaml", [*VARIANTS[name], "student.baseline=false"])
            run = gendistill.Run(config, cell / f"variant-{name}")
            print(f"seed {seed} {name}: reusing {run.adopt(cell / 'run', REUSED)}", flush=True)
            report = run.run().model_dump(mode="json")
            best = max(report["training"]["student"]["history"], key=lambda row: row["validation"])
            row = {
                "seed": seed,
                "variant": name,
                "overrides": VARIANTS[name],
                "validation_micro_ap_best": best["validation"],
                "best_epoch": best["epoch"],
                "test_micro_f1": report["student"]["micro_f1"],
                "teacher_test_micro_f1": report["teacher"]["micro_f1"],
            }
            path.write_text(json.dumps(row, indent=2) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
