"""`student.choose_temperature`: the distillation temperature chosen per run by 2-fold agreement with the teacher on
held-out transfer texts; the labeled texts always train, every transfer text is scored once, the test file never."""

import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import LABELS, cli_env, labeled, make_tiny_config
from safetensors.numpy import load_file

import gendistill
from gendistill.config import StudentConfig, build_config
from gendistill.io import read_json
from gendistill.pipeline.layout import RunLayout
from gendistill.runtime import make_accelerator
from gendistill.stages.distill import student_key
from gendistill.students import temperature_choice
from gendistill.students.building import make_student
from gendistill.students.examples import InMemoryExamples
from gendistill.students.temperature_choice import choose_temperature


def tiny_examples(tiny_teacher_dir, n_labeled_per_class=4, n_transfer_per_class=40):
    """A tiny student and examples: labeled texts (gold >= 0) then transfer texts (gold -1) whose teacher logits
    name their topic."""
    config = StudentConfig(embedding_dim=16, hidden_dim=16, epochs=2, batch_size=16)
    texts, gold = labeled(n_labeled_per_class, 1)
    transfer, topics = labeled(n_transfer_per_class, 2)
    student = make_student(
        config, texts + transfer, LABELS, seed=0, teacher_dir=tiny_teacher_dir, teacher_base=str(tiny_teacher_dir)
    )
    logits = np.eye(len(LABELS), dtype=np.float32)[gold + topics] * 4
    examples = InMemoryExamples.from_texts(student, texts + transfer, gold + [-1] * len(transfer), logits)
    return student, examples, config, len(texts)


def fake_training(monkeypatch, good_temperature):
    """Training replaced by a record of what each trial trained on; a trial at `good_temperature` then predicts the
    teacher's label, any other predicts it on every second text only."""
    trained = []

    def train(trial, examples, config, accelerator, **kwargs):
        trial.info["trial_temperature"] = config.temperature
        trained.append((config.temperature, list(examples.indices)))

    def predicted(trial, examples, rows):
        truth = np.asarray([int(np.argmax(examples[int(i)][1])) for i in rows])
        if trial.info["trial_temperature"] == good_temperature:
            return truth
        return np.where(np.asarray(rows) % 2 == 0, truth, (truth + 1) % len(LABELS))

    monkeypatch.setattr(temperature_choice, "train_student", train)
    monkeypatch.setattr(temperature_choice, "_predicted", predicted)
    return trained


def test_each_candidate_trains_on_every_labeled_text_and_one_half_and_is_scored_on_the_other(
    monkeypatch, tiny_teacher_dir
):
    student, examples, config, n_labeled = tiny_examples(tiny_teacher_dir)
    trained = fake_training(monkeypatch, good_temperature=1.0)
    choice = choose_temperature(
        student, examples, config, make_accelerator("cpu", "no", 0), seed=0, candidates=[2.0, 1.0]
    )
    transfer = set(range(n_labeled, len(examples)))
    assert choice["temperature"] == 1.0 and choice["held_out"] == len(transfer) and choice["folds"] == 2
    assert choice["agreement"]["1"] == 1.0 and choice["agreement"]["2"] == pytest.approx(0.5, abs=0.02)
    assert [temperature for temperature, _ in trained] == [2.0, 2.0, 1.0, 1.0]
    for _, rows in trained:
        assert set(range(n_labeled)) <= set(rows)  # the labeled texts always train
    halves = [set(rows) - set(range(n_labeled)) for _, rows in trained[:2]]
    assert not halves[0] & halves[1] and halves[0] | halves[1] == transfer  # each text held out once
    assert abs(len(halves[0]) - len(halves[1])) <= 1
    assert [rows for _, rows in trained[:2]] == [rows for _, rows in trained[2:]]  # the same folds for every T


def test_a_tie_keeps_the_configured_temperature_and_too_few_transfer_texts_keep_it_with_a_reason(
    monkeypatch, tiny_teacher_dir
):
    student, examples, config, _ = tiny_examples(tiny_teacher_dir)
    fake_training(monkeypatch, good_temperature=None)  # every candidate agrees on the same half
    accelerator = make_accelerator("cpu", "no", 0)
    tied = choose_temperature(student, examples, config, accelerator, seed=0, candidates=[1.0, config.temperature])
    assert tied["temperature"] == config.temperature
    assert (
        choose_temperature(student, examples, config, accelerator, seed=0, candidates=[1.0, 3.0])["temperature"] == 1.0
    )
    few_student, few, few_config, _ = tiny_examples(tiny_teacher_dir, n_transfer_per_class=10)
    kept = choose_temperature(few_student, few, few_config, accelerator, seed=0, candidates=[1.0, 3.0])
    assert kept["temperature"] == few_config.temperature and "too few" in kept["reason"]


def test_the_trials_leave_the_student_as_it_was(tiny_teacher_dir):
    student, examples, config, _ = tiny_examples(tiny_teacher_dir)
    before = {name: tensor.clone() for name, tensor in student.model.state_dict().items()}
    choice = choose_temperature(
        student, examples, config, make_accelerator("cpu", "no", 0), seed=0, candidates=[1.0, 2.0]
    )
    assert set(choice["agreement"]) == {"1", "2"} and all(0 <= v <= 1 for v in choice["agreement"].values())
    assert choice["temperature"] in (1.0, 2.0)
    after = student.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_the_candidates_are_part_of_the_student_key(task_dir, tiny_teacher_dir):
    raw = make_tiny_config(task_dir, tiny_teacher_dir)

    def key(**student):
        return student_key(build_config({**raw, "student": {**raw["student"], **student}}))["student"]

    default = key()
    assert default["choose_temperature"] == [1.0, 2.0]  # the default: a run dir distilled at a fixed T reruns
    assert key(choose_temperature=None) != default != key(choose_temperature=[1, 3])
    assert key(choose_temperature=[1, 2]) == default


def test_a_run_distills_at_the_chosen_temperature_and_the_report_says_so(tmp_path, task_dir, tiny_teacher_dir):
    raw = make_tiny_config(task_dir, tiny_teacher_dir)
    raw["transfer"]["sources"][0]["n"] = 120
    raw["student"]["choose_temperature"] = [1, 4]
    run_dir = tmp_path / "run"
    report = gendistill.run(build_config(raw), run_dir)
    layout = RunLayout(run_dir)
    training = read_json(layout.student / "training.json")
    choice = training["temperature_choice"]
    agreement = {float(k): v for k, v in choice["agreement"].items()}
    assert set(agreement) == {1.0, 4.0} and choice["held_out"] >= 100
    assert agreement[choice["temperature"]] == max(agreement.values())
    student = gendistill.StudentClassifier.from_pretrained(layout.student)
    assert student.info["distill_temperature"] == choice["temperature"]
    assert any("chosen (student.choose_temperature)" in note for note in report.notes)


def test_a_kill_after_the_choice_resumes_without_training_the_trials_again(tmp_path, task_dir, tiny_teacher_dir):
    raw = make_tiny_config(task_dir, tiny_teacher_dir)
    raw["transfer"]["sources"][0]["n"] = 120
    raw["student"]["baseline"] = False
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))

    def cli(run_dir, kill_at=None):
        return subprocess.run(
            [sys.executable, "-m", "gendistill.cli", "run", str(config_path), "--run-dir", str(run_dir)],
            env=cli_env(kill_at),
            capture_output=True,
            text=True,
            timeout=600,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    reference = tmp_path / "reference"
    assert cli(reference).returncode == 0
    run_dir = tmp_path / "run"
    killed = cli(run_dir, kill_at="student.epoch:1")  # the student's own training, after the trials
    assert killed.returncode == -9 and "choosing the temperature" in killed.stderr
    assert (run_dir / "checkpoints" / "distill-temperature.json").is_file()
    resumed = cli(run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "choosing the temperature" not in resumed.stderr and "chosen before the interruption" in resumed.stderr
    assert not (run_dir / "checkpoints" / "distill-temperature.json").exists()  # done: the checkpoints go
    first = read_json(reference / "student" / "training.json")["temperature_choice"]
    assert read_json(run_dir / "student" / "training.json")["temperature_choice"] == first
    final, expected = (load_file(str(d / "student" / "model.safetensors")) for d in (run_dir, reference))
    assert all((final[name] == expected[name]).all() for name in expected)
