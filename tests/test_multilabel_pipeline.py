"""A multi-label task through the whole CLI on tiny models: teacher with one sigmoid per label, a student distilled
on per-label soft targets, thresholds tuned on the validation split and stored with the student, multi-label scores
in every report file."""

import json
import random

import numpy as np
import pytest
import yaml
from conftest import TOPICS, make_tiny_config, write_jsonl
from typer.testing import CliRunner

from gendistill.cli import app
from gendistill.errors import ModelLoadError
from gendistill.students.classifier import StudentClassifier

NAMES = sorted(TOPICS)
FILLER = ["the", "we", "saw", "today", "and", "then"]


def tagged_rows(n: int, seed: int) -> list[dict]:
    """Texts with the words of one or two topics, or none (an empty list: no label applies)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        chosen = sorted(rng.sample(NAMES, rng.choice([0, 1, 1, 2, 2])))
        words = [word for name in chosen for word in rng.sample(TOPICS[name], 2)] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": chosen})
    return rows


@pytest.fixture(scope="module")
def multi_label_run(tmp_path_factory, tiny_teacher_dir):
    root = tmp_path_factory.mktemp("multi_label")
    data = {
        "train": str(write_jsonl(root / "train.jsonl", tagged_rows(120, 0))),
        "validation": str(write_jsonl(root / "validation.jsonl", tagged_rows(60, 1))),
        "test": str(write_jsonl(root / "test.jsonl", tagged_rows(60, 2))),
    }
    unlabeled = write_jsonl(root / "unlabeled.jsonl", [{"text": row["text"]} for row in tagged_rows(300, 3)])
    config = make_tiny_config(root, tiny_teacher_dir)
    config["data"] = data
    config["teacher"].update(epochs=60, learning_rate=3e-3, batch_size=8)  # learns the task (test_multilabel_teacher)
    config.pop("generator")
    config["transfer"] = {"sources": [{"type": "file", "path": str(unlabeled)}], "shard_size": 128}
    config["student"].update(epochs=15, batch_size=16, learning_rate=5e-3)
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["run", str(path), "--run-dir", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root / "run"


def test_the_report_scores_every_model_per_label_against_its_teacher(multi_label_run):
    report = json.loads((multi_label_run / "report.json").read_text())
    assert report["multi_label"] is True
    teacher, student, baseline = report["teacher"], report["student"], report["baseline_student"]
    for row in (teacher, student, baseline):
        assert row["accuracy"] is None  # accuracy means little with several labels per text
        assert 0.0 <= row["hamming_loss"] <= 1.0 and 0.0 <= row["subset_accuracy"] <= 1.0
        assert set(row["per_class"]) == set(NAMES)
        assert row["thresholds_fitted_on"] == "validation" and len(row["thresholds"]) == len(NAMES)
        assert all(0 < value < 1 for value in row["thresholds"])
    assert teacher["micro_f1"] >= 0.8
    # the student learns the labels from the teacher's per-label soft targets on unlabeled texts
    assert student["micro_f1"] >= 0.7
    assert student["micro_f1"] >= teacher["micro_f1"] - 0.2
    supports = sum(metrics["support"] for metrics in student["per_class"].values())
    test_rows = [json.loads(line) for line in (multi_label_run.parent / "test.jsonl").read_text().splitlines()]
    assert supports == sum(len(row["label"]) for row in test_rows)  # a label per text it applies to, not one per text
    markdown = (multi_label_run / "report.md").read_text()
    assert "| model | micro-F1 | macro-F1 | subset accuracy | Hamming loss |" in markdown
    assert "## Per label" in markdown and "## Decision thresholds per label" in markdown
    assert "Confusion matrix" not in markdown
    assert "micro-F1" in (multi_label_run / "report.html").read_text()


def test_the_student_answers_a_list_of_labels_with_its_stored_thresholds(multi_label_run):
    student = StudentClassifier.from_pretrained(multi_label_run / "student")
    stored = json.loads((multi_label_run / "student" / "config.json").read_text())
    assert stored["multi_label"] is True and student.thresholds == stored["thresholds"]
    two_topics = "goal team recipe oven the we saw"
    probabilities = student.predict_proba([two_topics])
    assert probabilities.shape == (1, len(NAMES))
    assert probabilities.sum() > 1.2  # independent sigmoids: two labels near 1 at once, not a softmax
    assert student.predict([two_topics, "the we saw today"]) == [["cooking", "sports"], []]


def test_thresholds_outside_the_open_interval_are_refused_at_load(multi_label_run, tmp_path):
    import shutil

    folder = shutil.copytree(multi_label_run / "student", tmp_path / "student")
    config = json.loads((folder / "config.json").read_text())
    config["thresholds"][1] = 1.0
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"config.json thresholds: threshold 1.0 of label 1 is outside \(0, 1\)"):
        StudentClassifier.from_pretrained(folder)


@pytest.fixture(scope="module")
def multi_label_export(multi_label_run, tmp_path_factory):
    from gendistill.artifacts.export import export_onnx

    root = tmp_path_factory.mktemp("multi_label_export")
    return export_onnx(multi_label_run, root / "fp32"), export_onnx(multi_label_run, root / "int8", quantize="int8")


def test_the_onnx_export_answers_label_lists_with_the_students_thresholds(multi_label_run, multi_label_export):
    from gendistill.artifacts.inference import Predictor

    student = StudentClassifier.from_pretrained(multi_label_run / "student")
    test_texts = [json.loads(line)["text"] for line in (multi_label_run.parent / "test.jsonl").read_text().splitlines()]
    for folder in multi_label_export:
        metadata = json.loads((folder / "metadata.json").read_text())
        assert metadata["multi_label"] is True and metadata["thresholds"] == student.thresholds
        predictor = Predictor(folder, threads=1)
        probabilities = predictor.predict_proba(test_texts)
        assert probabilities.shape == (len(test_texts), len(NAMES)) and probabilities.sum(axis=1).max() > 1.2
        parity = metadata["parity"]["models"]
        shipped = metadata["parity"]["shipped"]
        # a text agrees when the exported file gives exactly torch's set of labels
        expected = np.mean(
            [set(a) == set(b) for a, b in zip(predictor.predict(test_texts), student.predict(test_texts))]
        )
        assert parity[shipped]["label_agreement"] == pytest.approx(expected)
    fp32 = Predictor(multi_label_export[0], threads=1)
    assert fp32.predict(test_texts) == student.predict(test_texts)
    np.testing.assert_allclose(fp32.predict_proba(test_texts), student.predict_proba(test_texts), atol=1e-5)
    with pytest.raises(ValueError, match="min_confidence is for single-label exports"):
        fp32.predict(test_texts[:1], min_confidence=0.5)
    card = (multi_label_export[1] / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["metrics"] == ["f1"] and "every one of its 3 labels that applies" in card


def test_the_server_answers_label_lists_and_hugging_face_clients_get_per_label_sigmoids(multi_label_export):
    from starlette.testclient import TestClient

    from gendistill.artifacts.calibration import CalibrationError
    from gendistill.artifacts.inference import Predictor
    from gendistill.artifacts.serve import create_app

    folder = multi_label_export[0]
    client = TestClient(create_app(folder, threads=1))
    texts = ["goal team recipe oven the we saw", "the we saw today"]
    expected = Predictor(folder, threads=1).predict(texts)
    batch = client.post("/predict/batch", json={"texts": texts}).json()["predictions"]
    assert [answer["labels"] for answer in batch] == expected and all("label" not in a for a in batch)
    hub = client.post("/", json={"inputs": texts[0]}).json()[0]
    scores = {item["label"]: item["score"] for item in hub}
    assert sum(scores.values()) > 1.2  # sigmoids by default: two labels near 1 at once
    assert scores == pytest.approx(batch[0]["probabilities"])
    with pytest.raises(CalibrationError, match="is a multi-label export"):
        create_app(folder, threads=1, min_confidence=0.5)


def test_epochs_are_chosen_on_a_threshold_free_score_when_no_label_reaches_one_half(tiny_teacher_dir):
    """Rare labels: early on no probability reaches 0.5, so micro-F1 at 0.5 ties at 0 and kept the first epoch;
    the validation score is micro-averaged precision, which ranks the epochs as they learn."""
    import torch

    from gendistill.config import StudentConfig
    from gendistill.runtime import make_accelerator
    from gendistill.students.building import make_student
    from gendistill.students.examples import InMemoryExamples
    from gendistill.students.trainer import train_student

    rows = tagged_rows(90, 5)
    texts = [row["text"] for row in rows]
    label_sets = [[NAMES.index(name) for name in row["label"]] for row in rows]
    validation_rows = tagged_rows(40, 6)
    validation = ([r["text"] for r in validation_rows], [[NAMES.index(n) for n in r["label"]] for r in validation_rows])
    config = StudentConfig(arch="bag", init="random", embedding_dim=8, epochs=6, batch_size=16, learning_rate=1e-3)
    student = make_student(config, texts, NAMES, seed=0)
    student.multi_label = True
    teacher = np.full((len(texts), len(NAMES)), -4.0, np.float32)  # a teacher that says "rarely" to every label
    for row, labels in enumerate(label_sets):
        teacher[row, labels] = 0.0  # p = 0.5 where a label applies: sigmoid(0) = 0.5
    examples = InMemoryExamples.from_texts(student, texts, [-1] * len(texts), teacher)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats = train_student(
            student, examples, config, make_accelerator("cpu", "no", 0), seed=0, validation=validation
        )
    finally:
        torch.set_num_threads(threads)
    scores = [point["validation"] for point in stats["history"]]
    assert max(student.predict_proba(validation[0]).max(axis=1)) < 0.5  # nothing would pass a 0.5 threshold
    assert len(set(scores)) > 1 and stats["best_validation_accuracy"] == max(scores) > 0.3
