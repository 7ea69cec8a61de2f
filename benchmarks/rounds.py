"""Agreement rounds against one-shot distillation at an equal teacher-label budget (issue 21).

For each dataset x seed, one labeled sample (N per class) and one teacher, shared by every arm (`Run.adopt`); the
unlabeled pool is the dataset's train file minus the labeled sample (a `file` source):

  one_shot@S   the student distilled on S pool texts, for each S of --sizes (the one-shot learning curve)
  rounds       the student distilled on --start pool texts, then up to --count rounds of --per-round picks from
               --candidates new pool texts each; the teacher also labels --holdout pool texts once (the held-out
               agreement that stops the rounds). Its labels: start + holdout + picks, at most --budget.
               `--select margin disagreement` runs a rounds arm per selection rule (`rounds_by_select`).
               `--sampling top power` a rounds arm per sampling too (`rounds.sampling`; power arms are named
               `<select>-power`, `--power` their exponent).
  refit        (--refit) a fresh one-shot student on every text the first rule's rounds had labeled: the same
               labels as `rounds`, trained on alike with one-shot, so it tells the texts' worth from the training's.
               With it, `teacher_gold`: how often the teacher's label is the train file's own gold label on the
               rounds' picks, random start texts and held-out slice (a diagnostic; no arm sees those labels), and
               `teacher_gold_by_select`: the same for every rounds arm.

`--dev-texts K` scores every arm's student (each one-shot size, each rule's kept student) against the teacher on K
pool texts that no arm trained on: held-out teacher-labeled texts (`dev_agreement`), the criterion that chooses
between rules; the test file is only reported.

Test accuracy is only reported: the rounds stop and choose their student on held-out teacher labels, and one-shot
has nothing to choose. `labels_to_within_1pt` is the fewest teacher labels (mean over seeds) after which the
student's mean test accuracy is within 1 point of the teacher's: over the one-shot sizes, and over the rounds
(round r's labels and accuracy, from each run's report).

    python benchmarks/rounds.py --data-dir ../shared/data --datasets sst2 ag_news --seeds 0 1 2 \\
        --teacher models/all-MiniLM-L6-v2

Outputs under --out (benchmarks/results/rounds): runs/<dataset>-n<N>-s<seed>.json per cell, summary.json.
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
import pyarrow.parquet as pq

import gendistill
from gendistill.config import build_config
from gendistill.data.stored import read_task
from gendistill.data.tables import read_table
from gendistill.io import write_json
from gendistill.pipeline.layout import RunLayout

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lowdata  # noqa: E402 - benchmarks/lowdata.py: the same labeled sample and teacher recipe
from agreement import dev_agreement, normalized  # noqa: E402 - benchmarks/agreement.py

SHARED_STAGES = ("data", "teacher")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="folder of <name>/{train,test}.jsonl + labels.json"
    )
    parser.add_argument("--datasets", nargs="+", default=["sst2", "ag_news"])
    parser.add_argument("--per-class", type=int, default=64)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--teacher", required=True, help="HF id or folder of the teacher encoder")
    parser.add_argument("--teacher-kind", default="hf_encoder", choices=lowdata.TEACHER_KINDS)
    parser.add_argument("--budget", type=int, default=2000, help="teacher labels of unlabeled texts, at most")
    parser.add_argument("--sizes", nargs="+", type=int, default=[500, 1000, 2000, 4000], help="one-shot sizes")
    parser.add_argument("--start", type=int, default=1000, help="the rounds arm's one-shot transfer set")
    parser.add_argument("--holdout", type=int, default=200)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument(
        "--select",
        nargs="+",
        default=["margin"],
        choices=["margin", "entropy", "disagreement"],
        help="a rounds arm per rule (the first is the one summary.json's `rounds` reports)",
    )
    parser.add_argument(
        "--sampling",
        nargs="+",
        default=["top"],
        choices=["top", "power"],
        help="rounds.sampling: a rounds arm per rule and sampling (`power` arms are named `<select>-power`)",
    )
    parser.add_argument("--power", type=float, default=1.0, help="rounds.power for the `power` arms")
    parser.add_argument(
        "--dev-texts",
        type=int,
        default=0,
        help="score every arm's student against the teacher on K pool texts that no arm trained on (dev agreement: "
        "what chooses between rules; the test file is only reported)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        help="rounds.patience (default: --count, i.e. every round runs and the budget is spent; the student kept "
        "is still the round with the best held-out agreement)",
    )
    parser.add_argument("--min-gain", type=float, default=0.0)
    parser.add_argument(
        "--refit",
        action="store_true",
        help="add the arm `refit`: a fresh one-shot student on every text the first rule's rounds had the teacher "
        "label (start, held-out slice, picks): do the picked texts beat random ones when trained on alike?",
    )
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="config overrides section.key=value")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rounds"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache"))
    parser.add_argument("--summary-only", action="store_true", help="run nothing: rebuild summary.json from runs/")
    args = parser.parse_args(argv)
    if args.start + args.holdout + args.count * args.per_round > args.budget:
        parser.error("--start + --holdout + --count x --per-round exceeds --budget")
    args.generator, args.arch, args.quick = "scratch", "bilstm", False  # what lowdata.base_config reads
    return args


def run_cell(args: argparse.Namespace, dataset: str, seed: int) -> dict[str, Any]:
    base = lowdata.base_config(args, dataset, args.per_class, seed)
    kind = "" if args.teacher_kind == "hf_encoder" else f"-{args.teacher_kind}"
    cell = args.cache / dataset / f"n{args.per_class}-s{seed}{kind}" / "rounds"
    shared_dir = cell / "shared"
    shared = gendistill.Run(build_config(base, args.overrides), shared_dir)
    donor = args.cache / dataset / f"n{args.per_class}-s{seed}{kind}" / "shared"  # lowdata.py's cell, when it ran
    if (donor / "manifest.json").exists():
        shared.adopt(donor, SHARED_STAGES)
    shared.run(until="teacher")
    pool = {"type": "file", "path": base["data"]["train"], "exclude_labeled": True}
    student = {**base["student"], "baseline": False}
    result: dict[str, Any] = {"dataset": dataset, "per_class": args.per_class, "seed": seed, "one_shot": {}}
    for size in args.sizes:
        raw = {**base, "student": student, "transfer": {"sources": [{**pool, "n": size}]}}
        report = _run(args, cell / f"one_shot-{size}", raw, shared_dir, f"{dataset} seed {seed} one_shot@{size}")
        result["teacher"] = report.teacher.accuracy
        result["one_shot"][str(size)] = {"labels": report.transfer_set.kept, "accuracy": report.student.accuracy}
    result["rounds_by_select"] = {}
    runs: dict[str, Any] = {}
    for select, sampling in [(select, sampling) for select in args.select for sampling in args.sampling]:
        arm = arm_name(select, sampling)
        rounds = {
            "count": args.count,
            "per_round": args.per_round,
            "candidates": args.candidates,
            "holdout": args.holdout,
            "select": select,
            "patience": args.patience or args.count,
            "min_gain": args.min_gain,
        }
        if sampling == "power":
            rounds |= {"sampling": "power", "power": args.power}
        raw = {**base, "student": student, "transfer": {"sources": [{**pool, "n": args.start}]}, "rounds": rounds}
        run_dir = cell / f"rounds-{arm}"
        report = _run(args, run_dir, raw, shared_dir, f"{dataset} seed {seed} rounds ({arm})")
        assert report.rounds is not None
        result["rounds_by_select"][arm] = {
            "accuracy": report.student.accuracy,
            "labels": report.rounds.labels,
            "chosen_round": report.rounds.chosen_round,
            "stopped": report.rounds.stopped,
            "history": [
                {"round": r.round, "labels": r.labels, "agreement": r.agreement, "accuracy": r.accuracy}
                for r in report.rounds.history
            ],
        }
        runs[f"rounds_{arm}"] = run_dir
    first = arm_name(args.select[0], args.sampling[0])
    result["rounds"] = result["rounds_by_select"][first]
    if args.refit:
        labeled = cell / f"refit-{first}.jsonl"
        texts = sorted(trained_texts(runs[f"rounds_{first}"]))
        labeled.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
        raw = {**base, "student": student, "transfer": {"sources": [{**pool, "path": str(labeled)}]}}
        report = _run(args, cell / f"refit-{first}", raw, shared_dir, f"{dataset} seed {seed} refit")
        result["refit"] = {"labels": report.transfer_set.kept, "accuracy": report.student.accuracy}
        runs["refit"] = cell / f"refit-{first}"
        result["teacher_gold"] = teacher_gold(shared, runs[f"rounds_{first}"])
        result["teacher_gold_by_select"] = {
            arm: teacher_gold(shared, runs[f"rounds_{arm}"]) for arm in result["rounds_by_select"]
        }
    if args.dev_texts:
        one_shot = {f"one_shot@{size}": cell / f"one_shot-{size}" for size in args.sizes}
        arms = {**one_shot, **runs}
        data = shared.config.data
        pool = normalized(read_table(data.train)[data.text_column])
        trained = set().union(*(trained_texts(run_dir) for run_dir in arms.values()))
        test = normalized(read_task(shared.layout).test.texts)
        students = {arm: RunLayout(run_dir).final_student for arm, run_dir in arms.items()}
        result |= dev_agreement(shared, students, pool, trained | test, args.dev_texts, seed)
        print(f"[{dataset} seed {seed}] dev agreement: {result['dev_agreement']}", flush=True)
    return result


def arm_name(select: str, sampling: str) -> str:
    """A rounds arm's name: its selection rule, with `-power` for a stochastic pick (top keeps the rule's name)."""
    return select if sampling == "top" else f"{select}-{sampling}"


def _run(args: argparse.Namespace, run_dir: Path, raw: dict[str, Any], shared: Path, name: str) -> Any:
    run = gendistill.Run(build_config(raw, args.overrides), run_dir)
    run.adopt(shared, SHARED_STAGES)
    started = time.perf_counter()
    report = run.run(force=["changed"])
    print(f"[{name}] student {report.student.accuracy:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    return report


def trained_texts(run_dir: Path) -> set[str]:
    """Every text a run's students trained on: its transfer set, and the rounds' held-out slice and picks."""
    paths = [*run_dir.glob("transfer/**/shard-*.parquet"), *run_dir.glob("rounds/holdout.parquet")]
    paths += run_dir.glob("rounds/round-*/labels.parquet")
    return normalized(t for path in paths for t in pq.read_table(path, columns=["text"]).column("text").to_pylist())


def teacher_gold(shared: Any, rounds_dir: Path) -> dict[str, Any]:
    """How often the teacher's label is the gold one on the texts a rounds run had labeled: the round picks against
    the random start texts and held-out slice. A diagnostic that reads the pool's own labels (the train file's),
    which no arm ever sees: is the teacher as right where the student is unsure as elsewhere?"""
    data = shared.config.data
    frame = read_table(data.train)
    names = json.loads(Path(data.label_names).read_text(encoding="utf-8"))
    gold = {}
    for text, label in zip(frame[data.text_column], frame[data.label_column], strict=True):
        gold[" ".join(str(text).split())] = names.index(label) if isinstance(label, str) else int(label)

    def accuracy(paths: list[Path]) -> dict[str, Any]:
        tables = [pq.read_table(path, columns=["text", "logits"]) for path in paths]
        texts = [t for table in tables for t in table.column("text").to_pylist()]
        teacher = np.array([row for table in tables for row in table.column("logits").to_pylist()]).argmax(axis=1)
        truth = np.array([gold[" ".join(text.split())] for text in texts])
        return {"texts": len(texts), "accuracy": float((teacher == truth).mean())}

    return {
        "picks": accuracy(sorted(rounds_dir.glob("rounds/round-*/labels.parquet"))),
        "start": accuracy(sorted(rounds_dir.glob("labels/00-*/shard-*.parquet"))),
        "holdout": accuracy([rounds_dir / "rounds" / "holdout.parquet"]),
    }


def within_1pt(points: list[tuple[float, float]], teacher: float) -> float | None:
    """The fewest labels whose accuracy is within 1 point of `teacher` ((labels, accuracy) points)."""
    good = [labels for labels, accuracy in sorted(points) if accuracy >= teacher - 0.01]
    return good[0] if good else None


def summarize(cells: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """Per dataset, means over seeds (see the module doc)."""
    out: dict[str, Any] = {}
    for dataset in dict.fromkeys(cell["dataset"] for cell in cells):
        mine = [cell for cell in cells if cell["dataset"] == dataset]
        teacher = statistics.mean(cell["teacher"] for cell in mine)
        sizes = sorted({int(size) for cell in mine for size in cell["one_shot"]})
        one_shot_curve = [
            (
                statistics.mean(cell["one_shot"][str(size)]["labels"] for cell in mine),
                statistics.mean(cell["one_shot"][str(size)]["accuracy"] for cell in mine),
            )
            for size in sizes
            if all(str(size) in cell["one_shot"] for cell in mine)
        ]
        at_budget = [accuracy for labels, accuracy in one_shot_curve if labels <= budget]
        depth = min(len(cell["rounds"]["history"]) for cell in mine)
        rounds_curve = [
            (
                statistics.mean(cell["rounds"]["history"][r]["labels"] for cell in mine),
                statistics.mean(cell["rounds"]["history"][r]["accuracy"] for cell in mine),
            )
            for r in range(depth)
        ]
        out[dataset] = {
            "teacher": teacher,
            "budget": budget,
            "one_shot": at_budget[-1] if at_budget else None,
            "rounds": statistics.mean(cell["rounds"]["accuracy"] for cell in mine),
            "rounds_labels_spent": statistics.mean(cell["rounds"]["labels"] for cell in mine),
            "labels_to_within_1pt": {
                "one_shot": within_1pt(one_shot_curve, teacher),
                "rounds": within_1pt(rounds_curve, teacher),
            },
            "seeds": [cell["seed"] for cell in mine],
            "one_shot_curve": one_shot_curve,
            "rounds_curve": rounds_curve,
        }
        selects = [set(cell.get("rounds_by_select", {})) for cell in mine]
        for select in sorted(set.intersection(*selects)) if len(selects[0]) > 1 else []:
            out[dataset].setdefault("rounds_by_select", {})[select] = statistics.mean(
                cell["rounds_by_select"][select]["accuracy"] for cell in mine
            )
        if all("refit" in cell for cell in mine):
            out[dataset]["refit"] = statistics.mean(cell["refit"]["accuracy"] for cell in mine)
        if all("teacher_gold" in cell for cell in mine):
            out[dataset]["teacher_gold"] = {
                part: statistics.mean(cell["teacher_gold"][part]["accuracy"] for cell in mine)
                for part in mine[0]["teacher_gold"]
            }
        if all("teacher_gold_by_select" in cell for cell in mine):
            out[dataset]["teacher_gold_on_picks_by_select"] = {
                arm: statistics.mean(cell["teacher_gold_by_select"][arm]["picks"]["accuracy"] for cell in mine)
                for arm in mine[0]["teacher_gold_by_select"]
            }
        if all("dev_agreement" in cell for cell in mine):
            out[dataset]["dev_agreement"] = {
                arm: statistics.mean(cell["dev_agreement"][arm] for cell in mine) for arm in mine[0]["dev_agreement"]
            }
            out[dataset]["dev_texts"] = min(cell["dev_texts"] for cell in mine)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs = args.out / "runs"
    if not args.summary_only:
        for dataset in args.datasets:
            for seed in args.seeds:
                cell = run_cell(args, dataset, seed)
                write_json(runs / f"{dataset}-n{args.per_class}-s{seed}.json", cell)
    cells = [json.loads(path.read_text()) for path in sorted(runs.glob("*.json"))]
    summary = summarize(cells, args.budget)
    summary["command"] = "python " + " ".join(sys.argv)
    write_json(args.out / "summary.json", summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
