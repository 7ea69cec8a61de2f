"""The paper's comparison on real data: a low-data benchmark with every baseline, run through the gendistill API.

For each dataset x labeled-per-class N x seed ("cell") one labeled sample is drawn and one teacher fine-tuned; every
arm then reuses them (`Run.adopt`), so adding an arm never redoes the teacher, the generator or a transfer set:

  teacher               the fine-tuned encoder itself
  student_ce            student on the labeled examples only, cross-entropy (the run's baseline student)
  student_kd            student distilled on the labeled examples only
  student_kd_augment    + a rule-based transfer set (Tang et al. 2019: masking, word swaps, n-gram sampling)
  student_kd_generate   + texts sampled from a generator fine-tuned on the labeled texts (the method)
  student_kd_unlabeled  + real unlabeled texts of the train pool, labeled sample excluded (a perfect generator)
  setfit, model2vec     the peers (benchmarks/peers.py; `pip install -e ".[peers]"`), on the same labeled sample

Every model of a cell is then timed side by side in this process (`timed_passes`: the models take turns within
each pass), so the examples/s of teacher, students and peers are comparable even on a busy machine. `--variant NAME`
with `--set` runs the student arms again under another name (e.g. a changed default), reusing everything upstream.

    python benchmarks/lowdata.py --data-dir ../shared/data --datasets ag_news sst2 --per-class 8 64 --seeds 0 1 2 \\
        --teacher models/all-MiniLM-L6-v2
    python benchmarks/lowdata.py --data-dir ../shared/data --datasets sst2 --per-class 64 8 --seeds 0 1 2 \
        --teacher models/all-MiniLM-L6-v2 --inits teacher --arms teacher student_ce student_kd student_kd_unlabeled \
        setfit model2vec --sizes 4000
    python benchmarks/lowdata.py ... --arms student_kd_unlabeled --sizes 4000 --variant uncertain20 \
        --set label.drop_uncertain=0.2           # a curation option beside the defaults, same cells
    python benchmarks/lowdata.py --quick --data-dir ../shared/data --teacher models/all-MiniLM-L6-v2

Outputs under --out: runs/<dataset>/*.json (one per arm run), <dataset>/summary.json, RESULTS.md, accuracy_vs_size.png
and pareto.png.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import gendistill
from gendistill.config import RunConfig, StudentConfig, build_config
from gendistill.data.stored import read_task
from gendistill.evaluation.measure import classification_metrics
from gendistill.io import write_json, write_text
from gendistill.pipeline.layout import RunLayout
from gendistill.students.architectures import ARCHITECTURES

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402 - benchmarks/peers.py, beside this script

SHARED_STAGES = ("data", "teacher")
COMMENTARY = "## Commentary"  # a hand-written section of RESULTS.md that a rerun keeps
PEER_ARMS = ("setfit", "model2vec")
# --teacher-kind: the hf_encoder teacher's row is `teacher`, the others' teacher_KIND
TEACHER_KINDS = ("hf_encoder", "setfit", "auto")
ARMS = (
    "teacher",
    "student_ce",
    "student_kd",
    "student_kd_augment",
    "student_kd_generate",
    "student_kd_unlabeled",
    *PEER_ARMS,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="folder of <name>/{train,test}.jsonl + labels.json"
    )
    parser.add_argument("--datasets", nargs="+", default=["ag_news", "sst2"])
    parser.add_argument("--per-class", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--teacher", required=True, help="HF id or folder of the teacher encoder")
    parser.add_argument(
        "--teacher-kind",
        default="hf_encoder",
        choices=TEACHER_KINDS,
        help="setfit: SetFit's contrastive teacher; auto: the better of the two by cross-validation on the labeled "
        "sample (teacher/choice.json says which). Their cells live apart in the cache; the row is teacher_KIND and "
        "the students are the variant KIND unless --variant names one",
    )
    parser.add_argument("--generator", default="scratch", help="'scratch' or a causal LM id/folder (e.g. gpt2)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["1000", "4000", "all"],
        help="transfer-set sizes swept for the generate and unlabeled arms ('all' = the whole pool; "
        "for generate, 'all' means as many texts as the pool has)",
    )
    parser.add_argument(
        "--inits",
        nargs="+",
        default=["teacher", "random"],
        choices=["teacher", "random"],
        help="student embedding inits to run for every student arm",
    )
    parser.add_argument("--arch", default="bilstm", choices=ARCHITECTURES.names())
    parser.add_argument("--augment-copies", type=int, default=20)
    parser.add_argument(
        "--report-only", action="store_true", help="run nothing: rebuild RESULTS.md and the plots from --out/runs"
    )
    parser.add_argument("--speed-examples", type=int, default=256, help="test texts timed per model, side by side")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="config overrides section.key=value")
    parser.add_argument(
        "--variant",
        default="",
        help="a name for this invocation's student settings (--set): its runs and rows are kept apart as arm~NAME",
    )
    parser.add_argument(
        "--base-variant",
        default="",
        help="the variant whose transfer set and teacher labels --variant reuses (default: the unnamed runs)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one dataset, one N, one seed, small transfer sets (a smoke run: 4-5 minutes on 2 CPU cores)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.per_class, args.seeds = args.datasets[:1], [args.per_class[-1]], args.seeds[:1]
        args.sizes, args.inits, args.augment_copies = ["500"], ["teacher"], 2
    return args


def base_config(args: argparse.Namespace, dataset: str, per_class: int, seed: int) -> dict[str, Any]:
    folder = args.data_dir / dataset
    config: dict[str, Any] = {
        "data": {
            "train": str(folder / "train.jsonl"),
            "test": str(folder / "test.jsonl"),
            "label_names": str(folder / "labels.json"),
            "per_class": per_class,
            "seed": seed,
        },
        "teacher": teacher_config(args, per_class),
        "generator": {"model": args.generator},
        "student": {"arch": args.arch},
        "seed": seed,
        "evaluate": {"speed_examples": 256},
    }
    if args.quick:
        teacher = config["teacher"]
        (teacher["hf_encoder"] if teacher.get("kind") == "auto" else teacher)["epochs"] = 5
        config["generator"].update(epochs=10)
        config["student"]["epochs"] = 5
    return config


def teacher_config(args: argparse.Namespace, per_class: int) -> dict[str, Any]:
    if args.teacher_kind == "setfit":  # SetFit's few-shot defaults, as the setfit peer arm trains it
        return {"kind": "setfit", "model": args.teacher}
    fine_tuned = {"epochs": 10 if per_class >= 32 else 20, "learning_rate": 1e-4}
    if args.teacher_kind == "auto":  # each candidate as its own --teacher-kind row trains it
        return {"kind": "auto", "model": args.teacher, "hf_encoder": fine_tuned}
    return {"model": args.teacher, **fine_tuned}


def auto_choice(run_dir: Path) -> dict[str, Any]:
    """What an `auto` teacher chose and the CV accuracy of each candidate (nothing for the other kinds)."""
    path = run_dir / "teacher" / "choice.json"
    if not path.exists():
        return {}
    choice = json.loads(path.read_text())
    cv = {kind: row.get("accuracy_mean") for kind, row in choice["scores"].items()}
    return {"teacher_choice": choice["chosen"], "teacher_cv_accuracy": cv, "teacher_cv_folds": choice["folds_done"]}


def auto_teacher_summary(out: Path, command: str) -> dict[str, Any] | None:
    """Per dataset under `out/runs`, what each seed's `auto` teacher chose, the candidates' CV accuracy and the
    test accuracy of the teacher and of its student (means over seeds); None when no run there chose a teacher.
    Every run file under `out/runs` counts, this invocation's and earlier ones' (their commands are kept)."""
    summary: dict[str, Any] = {}
    for folder in sorted(p for p in (out / "runs").glob("*") if p.is_dir()):
        rows = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
        teachers = {row["seed"]: row for row in rows if row["arm"] == "teacher_auto" and "teacher_choice" in row}
        students = {row["seed"]: row for row in rows if row["arm"].startswith("student_kd_unlabeled")}
        seeds = {
            str(seed): {
                "student_test": students[seed]["accuracy"],
                "chosen": teacher["teacher_choice"],
                "cv_accuracy": teacher["teacher_cv_accuracy"],
                "cv_folds": teacher["teacher_cv_folds"],
                "teacher_test": teacher["accuracy"],
            }
            for seed, teacher in sorted(teachers.items())
            if seed in students
        }
        if not seeds:
            continue
        summary[folder.name] = {
            "per_class": next(iter(teachers.values()))["per_class"],
            "seeds": seeds,
            "teacher_test_mean": statistics.fmean(row["teacher_test"] for row in seeds.values()),
            "student_test_mean": statistics.fmean(row["student_test"] for row in seeds.values()),
        }
    if not summary:
        return None
    path = out / "summary.json"  # the commands of earlier invocations whose runs it also covers
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    commands = earlier.get("commands", [earlier["command"]] if "command" in earlier else [])
    return {**summary, "commands": [*dict.fromkeys([*commands, command])]}


def teacher_arm(args: argparse.Namespace) -> str:
    return "teacher" if args.teacher_kind == "hf_encoder" else f"teacher_{args.teacher_kind}"


def arm_configs(
    args: argparse.Namespace, base: dict[str, Any], pool_size: int, n_classes: int
) -> list[tuple[str, str, str, dict]]:
    """(arm, init, size label, config) for every student run of one cell."""
    runs = []
    for init in args.inits:
        student = {**base["student"], "init": init}
        if "student_ce" in args.arms or "student_kd" in args.arms:  # one run gives both: student = KD, baseline = CE
            # the same optimizer-step budget as a student distilled on the whole pool, as the pipeline's own
            # baseline gets: labeled-only arms must not lose merely for training fewer steps
            batch, epochs = 64, base["student"].get("epochs", StudentConfig().epochs)
            labeled = base["data"]["per_class"] * n_classes
            budget = epochs * math.ceil((labeled + pool_size) / batch)
            lo_epochs = max(epochs, math.ceil(budget / math.ceil(labeled / batch)))
            runs.append(
                ("labeled_only", init, "0", {**base, "student": {**student, "baseline": True, "epochs": lo_epochs}})
            )
        student = {**student, "baseline": False}
        if "student_kd_augment" in args.arms:
            sources = [{"type": "augment", "copies": args.augment_copies}]
            runs.append(
                ("student_kd_augment", init, "-", {**base, "student": student, "transfer": {"sources": sources}})
            )
        for size in args.sizes:
            n = pool_size if size == "all" else min(int(size), pool_size)
            if "student_kd_generate" in args.arms:
                sources = [{"type": "generate", "n": n}]
                runs.append(
                    ("student_kd_generate", init, size, {**base, "student": student, "transfer": {"sources": sources}})
                )
            if "student_kd_unlabeled" in args.arms:
                source = {"type": "file", "path": base["data"]["train"], "exclude_labeled": True}
                if size != "all":
                    source["n"] = n
                runs.append(
                    (
                        "student_kd_unlabeled",
                        init,
                        size,
                        {**base, "student": student, "transfer": {"sources": [source]}},
                    )
                )
    return runs


def run_cell(args: argparse.Namespace, dataset: str, per_class: int, seed: int) -> list[dict[str, Any]]:
    """Every arm of one (dataset, N, seed); returns one result row per arm and transfer size."""
    base = base_config(args, dataset, per_class, seed)
    kind = "" if args.teacher_kind == "hf_encoder" else f"-{args.teacher_kind}"
    cell = args.cache / dataset / f"n{per_class}-s{seed}{kind}"
    first = cell / "shared"
    shared = gendistill.Run(build_config(base, args.overrides), first)
    shared.run(until="teacher")  # the labeled sample and the teacher every arm reuses
    stats = json.loads((first / "data" / "stats.json").read_text())
    pool_size = stats["pool"] - stats["train"]
    rows: list[dict[str, Any]] = []
    predictors: dict[str, Any] = {}  # arm -> what to time side by side at the end of the cell
    generator_donor: Path | None = None
    transfer_donors: dict[tuple[str, str], Path] = {}  # (arm, size) -> the run whose transfer set and labels we reuse
    for arm, init, size, raw in arm_configs(args, base, pool_size, len(stats["label_names"])):
        config = build_config(raw, args.overrides)
        name = f"{arm}-{init}-{size}" + (f"~{args.variant}" if args.variant else "")
        run = gendistill.Run(config, cell / name)
        adopted = run.adopt(first, SHARED_STAGES)
        default_run = cell / (f"{arm}-{init}-{size}" + (f"~{args.base_variant}" if args.base_variant else ""))
        if args.variant and (default_run / "manifest.json").exists():  # the same transfer set, labeled once
            adopted += run.adopt(default_run, ("generator", "transfer", "label"))
        if arm == "student_kd_generate" and generator_donor is not None:
            adopted += run.adopt(generator_donor, ("generator",))
        if (arm, size) in transfer_donors:  # another student init of the same arm: only distill differs
            adopted += run.adopt(transfer_donors[(arm, size)], ("generator", "transfer", "label"))
        reused = ", ".join(dict.fromkeys(adopted)) or "nothing"
        print(f"[{dataset} N={per_class} seed={seed}] {name} (reusing {reused})", flush=True)
        started = time.perf_counter()
        report = run.run(force=["changed"]).model_dump(mode="json")  # a changed arm setting reruns only what it affects
        if arm == "student_kd_generate":
            generator_donor = generator_donor or cell / name
        transfer_donors.setdefault((arm, size), cell / name)
        arm_rows = result_rows(dataset, per_class, seed, arm, init, size, report, config, time.perf_counter() - started)
        if "teacher" in args.arms and not any(r["arm"] == teacher_arm(args) for r in rows + arm_rows):
            teacher_seconds = arm_rows[0]["seconds_per_stage"].get("teacher")
            arm_rows.insert(
                0,
                {
                    **arm_rows[0],
                    "arm": teacher_arm(args),
                    "size_label": "0",
                    "transfer_size": 0,
                    **_metrics(report["teacher"]),
                    "train_seconds": teacher_seconds,
                    **auto_choice(first),
                },
            )
        elif "teacher" not in args.arms:
            arm_rows = [r for r in arm_rows if r["arm"] != "teacher"]
        for row in arm_rows:
            row["variant"] = args.variant
            if row["arm"] != teacher_arm(args):
                row["arm"] += f"~{args.variant}" if args.variant else ""
                predictors[row["arm"]] = cell / name / ("baseline_student" if "student_ce" in row["arm"] else "student")
        rows += arm_rows
    task = read_task(RunLayout(first))
    for peer in (arm for arm in PEER_ARMS if arm in args.arms):
        print(f"[{dataset} N={per_class} seed={seed}] {peer}", flush=True)
        model = peers.TRAINERS[peer](args.teacher, task.train.texts, task.train.labels, seed)
        predictions = model.predict(task.test.texts)
        metrics = classification_metrics(task.test.labels, predictions, len(task.label_names))
        rows.append(
            {
                "dataset": dataset,
                "per_class": per_class,
                "seed": seed,
                "init": "-",
                "transfer_size": 0,
                "size_label": "0",
                "arm": peer,
                "variant": "",
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "params": model.params,
                "train_seconds": round(model.train_seconds, 1),
                "settings": model.settings,
            }
        )
        predictors[peer] = model
    if "teacher" in args.arms:
        predictors[teacher_arm(args)] = shared
    speeds = time_side_by_side(predictors, task.test.texts[: args.speed_examples])
    for row in rows:
        if row["arm"] in speeds:
            row["examples_per_s_pipeline"] = row.get("examples_per_s")
            row["examples_per_s"] = speeds[row["arm"]]
            row["speed"] = speeds["settings"]
    return rows


def time_side_by_side(predictors: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """Median examples/s of every model of a cell over the same texts, timed in turns within each pass."""
    import os

    import torch

    from gendistill.evaluation.measure import timed_passes
    from gendistill.students.classifier import StudentClassifier

    batch = 64
    calls = {}
    for name, target in predictors.items():
        if isinstance(target, peers.PeerModel):
            calls[name] = target.predict
        elif isinstance(target, gendistill.Run):
            teacher = target.config.teacher.load(target.layout.teacher, torch.device("cpu"))
            calls[name] = lambda texts, t=teacher: t.logits(texts, batch)
        elif Path(target).exists():
            student = StudentClassifier.from_pretrained(target)
            calls[name] = lambda texts, s=student: s.logits(texts, batch)
    passes = timed_passes(calls, texts, batch, None, passes=5, min_seconds=0.25)
    settings = {
        "texts": len(texts),
        "batch_size": batch,
        "threads": torch.get_num_threads(),
        "passes": 5,
        "load_average": round(os.getloadavg()[0], 2),
    }
    return {name: statistics.median(values) for name, values in passes.items()} | {"settings": settings}


def result_rows(
    dataset: str,
    per_class: int,
    seed: int,
    arm: str,
    init: str,
    size: str,
    report: dict,
    config: RunConfig,
    seconds: float,
) -> list[dict[str, Any]]:
    common = {
        "dataset": dataset,
        "per_class": per_class,
        "seed": seed,
        "init": init,
        "transfer_size": report["transfer_set"]["kept"],
        "size_label": size,
        "seconds_per_stage": {k: v["seconds"] for k, v in report["stages"].items()},
        "wall_seconds": round(seconds, 1),
        "config": config.model_dump(mode="json"),
    }
    rows = []
    if arm == "labeled_only":
        pairs = [("student_kd", report["student"]), ("student_ce", report.get("baseline_student"))]
    else:
        pairs = [(arm, report["student"])]
    for name, metrics in pairs:
        if metrics is None:
            continue
        stage = "baseline" if name == "student_ce" else "distill"
        seconds = common["seconds_per_stage"].get(stage)
        rows.append({**common, "arm": f"{name}[{init}]", **_metrics(metrics), "train_seconds": seconds})
    return rows


def _metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key in ("accuracy", "macro_f1", "params", "examples_per_s")}


def summarize(dataset: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    arms: dict[str, dict[str, Any]] = {}
    for row in rows:
        shared = row["size_label"] in ("0", "-") or row["arm"].startswith("teacher") or row["arm"] in PEER_ARMS
        arm = row["arm"] + ("" if shared else f"@{row['size_label']}")
        cell = arms.setdefault(arm, {}).setdefault(str(row["per_class"]), {})
        if row["seed"] in cell.get("seed", []):  # the teacher, written by more than one invocation of a cell
            continue
        if row.get("train_seconds") is None and row["arm"] not in PEER_ARMS:  # rows written before the field was
            stage = (
                "teacher"
                if row["arm"].startswith("teacher")
                else "baseline"
                if "student_ce" in row["arm"]
                else "distill"
            )
            row = {**row, "train_seconds": row.get("seconds_per_stage", {}).get(stage)}
        for field in ("seed", "accuracy", "macro_f1", "params", "transfer_size", "examples_per_s", "train_seconds"):
            cell.setdefault(field, []).append(row.get(field))
    out: dict[str, Any] = {"dataset": dataset, "arms": {}}
    for arm, by_n in arms.items():
        out["arms"][arm] = {}
        for n, c in by_n.items():
            out["arms"][arm][n] = {
                "accuracy_mean": statistics.mean(c["accuracy"]),
                "accuracy_std": statistics.pstdev(c["accuracy"]) if len(c["accuracy"]) > 1 else 0.0,
                "macro_f1_mean": _mean(c["macro_f1"]),
                "seeds": c["seed"],
                "accuracies": c["accuracy"],
                "params": max(c["params"]),
                "transfer_size_mean": statistics.mean(c["transfer_size"]),
                "examples_per_s_median": _median(c["examples_per_s"]),
                "train_seconds_mean": _mean(c["train_seconds"]),
            }
    return out


def _mean(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else None


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def markdown(command: str, summaries: list[dict[str, Any]]) -> str:
    lines = [
        "# Low-data benchmark results",
        "",
        "Accuracy (%) on each dataset's test file, mean ± std over seeds (seed count in brackets), then macro-F1 "
        "(mean). `[teacher]`/`[random]`: the student's embedding init; `@K`: transfer-set size; `~NAME`: a student "
        "variant (`--variant`). examples/s: CPU, median over the seeds, every model of a cell timed side by side in "
        "one process (turns within each pass); train s: mean seconds to train that arm alone (students: the distill "
        "or baseline stage; teacher fine-tuning, generation and labeling are shared by the student arms and not in "
        "it; peers: everything they run).",
        "",
    ]
    for summary in summaries:
        ns = sorted({n for arm in summary["arms"].values() for n in arm}, key=int)
        lines += [
            f"## {summary['dataset']}",
            "",
            *[f"Command: `{c}`" for c in summary.get("commands", [command])],
            "",
            "| arm | " + " | ".join(f"N={n}/class acc | F1 | ex/s | train s" for n in ns) + " | params |",
            "|---|" + "---|---|---|---|" * len(ns) + "---|",
        ]
        for arm, by_n in sorted(summary["arms"].items(), key=lambda item: _arm_order(item[0])):
            cells = []
            for n in ns:
                c = by_n.get(n)
                if c is None:
                    cells += ["–"] * 4
                    continue
                cells += [
                    f"{100 * c['accuracy_mean']:.1f} ± {100 * c['accuracy_std']:.1f} [{len(c['seeds'])}]",
                    _fmt(c.get("macro_f1_mean"), 100, ".1f"),
                    _fmt(c.get("examples_per_s_median"), 1, ",.0f"),
                    _fmt(c.get("train_seconds_mean"), 1, ",.0f"),
                ]
            params = max(c["params"] for c in by_n.values())
            lines.append(f"| {arm} | " + " | ".join(cells) + f" | {params:,} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, scale: float, spec: str) -> str:
    return "–" if value is None else format(scale * value, spec)


def _arm_order(arm: str) -> tuple[int, int, str, float]:
    """Table order: the ARMS order, teacher-init before random-init, variants by name, transfer sizes ascending."""
    base, _, size = arm.partition("@")
    base, _, variant = base.partition("~")
    size, _, size_variant = size.partition("~")
    name, _, init = base.partition("[")
    return (
        ARMS.index(name) if name in ARMS else 0,  # teacher_KIND beside the teacher
        0 if init.startswith("teacher") else 1,
        variant or size_variant,
        float("inf") if size == "all" else float(size or 0),
    )


def plot(summaries: list[dict[str, Any]], path: Path) -> None:
    """Accuracy vs transfer-set size per source, the teacher as a horizontal line (one panel per dataset x N)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, n) for s in summaries for n in sorted({n for a in s["arms"].values() for n in a}, key=int)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (summary, n) in zip(axes[0], panels, strict=True):
        curves: dict[str, list[tuple[float, float]]] = {}
        for arm, by_n in summary["arms"].items():
            if n not in by_n:
                continue
            if arm.startswith("teacher"):
                style = "--" if arm == "teacher" else "-"
                ax.axhline(100 * by_n[n]["accuracy_mean"], color="black", linestyle=style, label=arm)
            elif "@" in arm:
                source = arm.split("@")[0]
                curves.setdefault(source, []).append((by_n[n]["transfer_size_mean"], 100 * by_n[n]["accuracy_mean"]))
            elif arm.startswith("student_ce"):
                style = ":" if "[teacher]" in arm else "-."
                ax.axhline(100 * by_n[n]["accuracy_mean"], linestyle=style, color="gray", label=arm)
        for source, points in sorted(curves.items()):
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker="o", label=source)
        ax.set_title(f"{summary['dataset']}, N={n}/class")
        ax.set_xlabel("transfer-set size")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pareto_plot(summaries: list[dict[str, Any]], path: Path) -> None:
    """Accuracy vs CPU examples/s (log), marker area by parameter count, one panel per dataset x N; the upper
    right is better. Arms without a side-by-side speed figure are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, n) for s in summaries for n in sorted({n for a in s["arms"].values() for n in a}, key=int)]
    if not panels:
        return
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(7 * columns, 5 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (summary, n) in zip(axes.flat, panels, strict=False):
        for arm, by_n in sorted(summary["arms"].items(), key=lambda item: _arm_order(item[0])):
            c = by_n.get(n)
            if c is None or c.get("examples_per_s_median") is None:
                continue
            area = 20 + 400 * (c["params"] / 23e6) ** 0.5
            ax.scatter(c["examples_per_s_median"], 100 * c["accuracy_mean"], s=area, alpha=0.6, label=arm)
            ax.annotate(arm, (c["examples_per_s_median"], 100 * c["accuracy_mean"]), fontsize=6)
        ax.set_xscale("log")
        ax.set_title(f"{summary['dataset']}, N={n}/class (marker area ~ sqrt(params))")
        ax.set_xlabel("CPU examples/s (log)")
        ax.set_ylabel("test accuracy (%)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.teacher_kind != "hf_encoder" and not args.variant:  # its students must not mix with the default's rows
        args.variant = args.teacher_kind
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    command = "python benchmarks/lowdata.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    summaries = []
    for dataset in args.datasets:
        rows = []
        for per_class in args.per_class:
            for seed in args.seeds if not args.report_only else []:
                cell_rows = run_cell(args, dataset, per_class, seed)
                for row in cell_rows:
                    name = f"{row['arm']}-{row['size_label']}-n{per_class}-s{seed}".replace("[", "_").replace("]", "")
                    write_json(args.out / "runs" / dataset / f"{name}.json", row)
                rows += cell_rows
        # the summary covers every run of this dataset under --out, this invocation's and earlier ones (more seeds)
        all_rows = [
            json.loads(p.read_text(encoding="utf-8")) for p in sorted((args.out / "runs" / dataset).glob("*.json"))
        ]
        previous = args.out / dataset / "summary.json"
        commands = json.loads(previous.read_text(encoding="utf-8")).get("commands", []) if previous.exists() else []
        summary = summarize(dataset, all_rows or rows)
        summary["commands"] = [*dict.fromkeys([*commands, *([] if args.report_only else [command])])]
        write_json(previous, summary)
        summaries.append(summary)
    # datasets benchmarked by earlier invocations keep their rows (each with the command that produced it)
    done = {summary["dataset"] for summary in summaries}
    for path in sorted(args.out.glob("*/summary.json")):
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if "arms" in earlier and earlier.get("dataset") not in done:  # other benchmarks' summaries live here too
            summaries.append(earlier)
    if args.teacher_kind == "auto" and (auto := auto_teacher_summary(args.out, command)) is not None:
        write_json(args.out / "summary.json", auto)
    results = args.out / "RESULTS.md"
    kept = results.read_text(encoding="utf-8").partition(COMMENTARY)[2] if results.exists() else ""
    write_text(results, markdown(command, summaries) + (f"\n{COMMENTARY}{kept}" if kept else ""))
    plot(summaries, args.out / "accuracy_vs_size.png")
    pareto_plot(summaries, args.out / "pareto.png")
    print(f"results: {args.out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
