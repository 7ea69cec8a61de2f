"""Labeled-only students (the baseline, or a run without transfer texts) choose their epoch count by
cross-validation on the labeled texts, inside their step budget, never by the test set."""

import json

import numpy as np
from conftest import make_tiny_config

from gendistill import Run
from gendistill.config import build_config
from gendistill.students.cross_validation import best_epoch_count


def test_the_epoch_count_is_the_first_best_of_the_smoothed_mean_curve():
    rising_then_overfit = [[0.3, 0.6, 0.8, 0.7, 0.5, 0.4], [0.4, 0.5, 0.8, 0.8, 0.6, 0.5]]
    best, smoothed = best_epoch_count(rising_then_overfit)
    assert best == 3 and len(smoothed) == 6
    # one lucky early epoch in a long curve is smoothed away: the plateau at 20-25 wins
    curve = [0.5] * 40
    curve[1] = 0.9
    for epoch in range(19, 25):
        curve[epoch] = 0.8
    best, _ = best_epoch_count([curve, curve])
    assert 20 <= best <= 25
    assert best_epoch_count([[0.5, 0.5, 0.5]])[0] == 1  # a flat curve: the fewest epochs


def _run(task_dir, teacher_dir, run_dir, *overrides):
    config = make_tiny_config(task_dir, teacher_dir)
    config["transfer"]["sources"] = [{"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 200}]
    config["student"]["epochs"] = 30  # a budget long enough for early stopping to show
    run = Run(build_config(config, list(overrides)), run_dir)
    run.run(until="baseline")
    return run


def test_the_baseline_picks_its_epochs_by_cross_validation_within_the_distilled_budget(
    task_dir, tiny_teacher_dir, tmp_path
):
    run = _run(task_dir, tiny_teacher_dir, tmp_path / "cv")
    budget = run.records["distill"]["summary"]["steps"]
    summary = run.records["baseline"]["summary"]
    training = json.loads((run.layout.baseline_student / "training.json").read_text())
    chosen = training["epochs_by_cv"]
    labeled = run.records["data"]["summary"]["train"]
    per_epoch = -(-labeled // 16)
    assert summary["cv"]["folds"] == 4 and 1 <= chosen["epochs"] <= chosen["max_epochs"]
    assert chosen["max_epochs"] == -(-budget // per_epoch)  # the budget bounds the search
    assert summary["steps"] == chosen["epochs"] * per_epoch <= budget
    assert len(chosen["curve"]) == chosen["max_epochs"] and max(chosen["curve"]) == chosen["cv_accuracy"]
    # early stopping: on this easy task every fold peaks early and stops 20 epochs later, before the budget
    assert len(chosen["fold_epochs"]) == 4 and max(chosen["fold_epochs"]) < chosen["max_epochs"]

    matched = _run(task_dir, tiny_teacher_dir, tmp_path / "matched", "student.labeled_only_budget=matched")
    assert (
        matched.records["baseline"]["summary"]["steps"] == budget and "cv" not in matched.records["baseline"]["summary"]
    )


def test_a_run_without_transfer_texts_picks_the_students_epochs_by_cross_validation(
    task_dir, tiny_teacher_dir, tmp_path
):
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"] = []
    config["student"].update(epochs=8)
    run = Run(build_config(config), tmp_path / "run")
    run.run(until="baseline")
    summary = run.records["distill"]["summary"]
    assert summary["cv"]["folds"] >= 2 and summary["epochs"] == summary["cv"]["epochs"] <= 8
    assert np.isfinite(summary["cv"]["cv_accuracy"])
    # the baseline searches the distilled student's whole budget, not just the epochs that student chose
    baseline = json.loads((run.layout.baseline_student / "training.json").read_text())["epochs_by_cv"]
    assert baseline["max_epochs"] == 8 and summary["budget_steps"] == 8 * -(-summary["examples"] // 16)


def test_stop_after_ends_training_once_validation_stops_improving(tiny_teacher_dir):
    from accelerate import Accelerator
    from conftest import LABELS, labeled

    from gendistill.config import StudentConfig
    from gendistill.students.building import make_student
    from gendistill.students.examples import InMemoryExamples
    from gendistill.students.trainer import train_student

    texts, gold = labeled(5, 0)
    config = StudentConfig(init="random", embedding_dim=8, hidden_dim=8, batch_size=8)
    student = make_student(config, texts, LABELS, seed=0)
    examples = InMemoryExamples.from_texts(student, texts, gold)
    stats = train_student(
        student, examples, config, Accelerator(cpu=True), seed=0, steps=200, validation=(texts, gold), stop_after=3
    )
    scores = [record["validation"] for record in stats["history"]]
    assert len(scores) < 200 / -(-len(texts) // 8)  # stopped before the budget
    best = int(np.argmax(scores))
    assert len(scores) - 1 - best == 3  # exactly `stop_after` epochs without a new best
