"""The estimator API (`gendistill.GenDistillClassifier`) on the tiny fixture task, and experiment tracking: one fit
with report_to [tensorboard, mlflow] runs every training loop (teacher, generator, student, baseline) and each
writes its loss curve, offline, into local folders."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from conftest import make_rows, make_tiny_config

import gendistill
from gendistill.errors import ConfigError
from gendistill.evaluation.report import Report

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

LOOPS = ("teacher", "generator", "student", "baseline_student")


def tiny_estimator(teacher_dir, run_dir, **overrides) -> gendistill.GenDistillClassifier:
    """The whole pipeline on tiny models in seconds (the tiny config of conftest, as estimator arguments)."""
    tiny = make_tiny_config(Path("unused"), teacher_dir)  # the teacher and generator of the tiny pipeline
    settings = {
        "teacher": tiny["teacher"],
        "generator": tiny["generator"],
        "student": {
            "arch": "bag",
            "init": "random",
            "embedding_dim": 16,
            "hidden_dim": 16,
            "epochs": 15,
            "batch_size": 8,
            "learning_rate": 5e-3,
        },
        "transfer": [{"type": "generate", "n": 20, "max_new_tokens": 12, "batch_size": 16}],
        "run_dir": run_dir,
        "device": "cpu",
        "settings": {"evaluate": {"speed_examples": 16}, "transfer": {"shard_size": 16, "filters": {"min_words": 1}}},
    }
    return gendistill.GenDistillClassifier(**{**settings, **overrides})


def split(rows):
    return [row["text"] for row in rows], [row["label"] for row in rows]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_teacher_dir):
    """One fit from plain lists, with unlabeled texts, a held-out eval set and TensorBoard + MLflow (file store)."""
    root = tmp_path_factory.mktemp("api")
    texts, labels = split(make_rows(20, 0))
    unlabeled = [row["text"] for row in make_rows(20, 2)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"file:{root / 'mlruns'}")
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        clf = tiny_estimator(tiny_teacher_dir, root / "run", report_to=["tensorboard", "mlflow"])
        assert clf.fit(texts, labels, unlabeled=unlabeled, eval=split(make_rows(10, 1))) is clf
    return clf, root


def test_fit_on_lists_trains_and_predicts(fitted):
    clf, _ = fitted
    test_texts, test_labels = split(make_rows(10, 1))
    predictions = clf.predict(test_texts)
    assert predictions.shape == (30,) and set(predictions) <= {"cooking", "sports", "weather"}
    assert list(clf.classes_) == ["cooking", "sports", "weather"] == clf.label_names_
    assert clf.predict_proba(test_texts).shape == (30, 3)
    assert clf.score(test_texts, test_labels) >= 0.6  # the easy fixture task: it learnt something
    report = clf.report_
    assert isinstance(report, Report) and report.test_examples == 30
    assert report.student.accuracy == pytest.approx(clf.score(test_texts, test_labels))  # eval = the test set
    assert report.transfer_set.kept > 20  # generated texts plus the unlabeled file
    assert {source.type for source in report.transfer_set.sources} == {"generate", "file"}
    with pytest.raises(TypeError, match="not one string"):
        clf.predict("the team scored a goal")
    assert len(clf.predict(["the team scored a goal"])) == 1


def test_fit_takes_numpy_pandas_and_datasets_and_reuses_the_run(fitted):
    clf, _ = fitted
    rows = make_rows(20, 0)
    table = datasets.Dataset.from_list(rows)
    frame = pd.DataFrame(rows, index=range(100, 160))
    manifest = clf.run_dir_ / "manifest.json"
    before = {name: record["finished_at"] for name, record in json.loads(manifest.read_text())["stages"].items()}
    unlabeled = np.array([row["text"] for row in make_rows(20, 2)])
    test_texts, test_labels = split(make_rows(10, 1))
    clf.set_params()  # sklearn-style: parameters are plain attributes
    clf.fit(table["text"], frame["label"], unlabeled=unlabeled, eval=(tuple(test_texts), pd.Series(test_labels)))
    after = {name: record["finished_at"] for name, record in json.loads(manifest.read_text())["stages"].items()}
    assert after == before  # the same data and settings: every stage was reused


def test_integer_labels_predict_integers(tmp_path, tiny_teacher_dir):
    texts, names = split(make_rows(10, 0))
    order = ["cooking", "sports", "weather"]
    ids = np.array([order.index(name) for name in names])
    clf = tiny_estimator(tiny_teacher_dir, tmp_path / "run", generator=None, label_names=order, transfer=None)
    clf.set_params(student={"arch": "bag", "init": "random", "embedding_dim": 8, "epochs": 3, "baseline": False})
    clf.fit(texts, ids)
    assert list(clf.classes_) == [0, 1, 2] and clf.label_names_ == order
    assert set(clf.predict(texts[:5])) <= {0, 1, 2} and clf.predict(texts[:5]).dtype.kind == "i"
    assert clf.report_.student.accuracy is None  # no eval set: nothing measured, nothing invented
    assert not (clf.run_dir_ / "baseline_student").exists()


def test_fit_errors_are_clear(tmp_path, tiny_teacher_dir):
    with pytest.raises(ConfigError, match="teacher= is required"):
        gendistill.GenDistillClassifier(run_dir=tmp_path).fit(["a b c", "d e f"], ["x", "y"])
    with pytest.raises(
        ConfigError, match=r"GenDistillClassifier: unknown config key 'student.epoch'.*'student.epochs'"
    ):
        tiny_estimator(tiny_teacher_dir, tmp_path, student={"epoch": 3}).fit(["a b c", "d e f"], ["x", "y"])
    with pytest.raises(TypeError, match="not one string"):
        tiny_estimator(tiny_teacher_dir, tmp_path).fit("a b c", ["x"])
    with pytest.raises(ValueError, match="1 labels for 2 texts"):
        tiny_estimator(tiny_teacher_dir, tmp_path).fit(["a b c", "d e f"], ["x"])
    with pytest.raises(TypeError, match=r"eval must be a pair \(texts, labels\)"):
        tiny_estimator(tiny_teacher_dir, tmp_path).fit(["a b c", "d e f"], ["x", "y"], eval=["a b c"])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        gendistill.GenDistillClassifier().predict(["a text"])


def test_save_pretrained_card_metrics_equal_report(fitted, tmp_path):
    from huggingface_hub import ModelCard

    clf, _ = fitted
    clf.save_pretrained(tmp_path / "student")
    card = ModelCard.load(tmp_path / "student" / "README.md")
    report = json.loads((clf.run_dir_ / "report.json").read_text())
    results = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert results == {"accuracy": report["student"]["accuracy"], "f1": report["student"]["macro_f1"]}
    teacher = card.data.to_dict()["gendistill"]["teacher"]
    assert (teacher["accuracy"], teacher["macro_f1"]) == (report["teacher"]["accuracy"], report["teacher"]["macro_f1"])
    loaded = gendistill.StudentClassifier.from_pretrained(tmp_path / "student")
    assert loaded.predict(["rain and wind today"]) == clf.student_.predict(["rain and wind today"])


def test_tensorboard_logs_every_training_loop(fitted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    clf, _ = fitted
    manifest = json.loads((clf.run_dir_ / "manifest.json").read_text())["stages"]
    student_steps = manifest["distill"]["summary"]["steps"]
    for loop in LOOPS:
        events = EventAccumulator(str(clf.run_dir_ / "logs" / loop))
        events.Reload()
        tags = events.Tags()["scalars"]
        assert {"train/loss", "train/learning_rate", "train/epoch_loss"} <= set(tags), loop
        losses = events.Scalars("train/loss")
        assert losses[0].step == 1 and all(np.isfinite(event.value) for event in losses)
        if loop == "student":
            assert len(losses) == student_steps
        assert max(event.value for event in events.Scalars("train/learning_rate")) > 0  # warm-up starts at 0


def test_mlflow_logs_every_training_loop(fitted):
    from mlflow.tracking import MlflowClient

    clf, root = fitted
    client = MlflowClient(tracking_uri=f"file:{root / 'mlruns'}")
    experiment = client.get_experiment_by_name(clf.run_dir_.name)
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == set(LOOPS)
    for loop, run in runs.items():
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert len(history) > 1 and run.info.status == "FINISHED", loop
        assert "train/epoch_loss" in run.data.metrics and "train/learning_rate" in run.data.metrics
    assert runs["student"].data.params["student.arch"] == "bag"


def test_report_to_is_a_knob(fitted, tmp_path):
    from gendistill import Run

    clf, _ = fitted
    tracked = clf.config_
    untracked = tracked.model_copy(update={"report_to": []})
    assert tracked.report_to == ["tensorboard", "mlflow"]
    keys = {name: key["key"] for name, key in Run(tracked, clf.run_dir_).keys().items()}
    assert keys == {name: key["key"] for name, key in Run(untracked, clf.run_dir_).keys().items()}
    from gendistill.config import build_config

    assert (
        build_config({**json.loads(json.dumps(tracked.model_dump(mode="json"))), "report_to": "none"}).report_to == []
    )
    with pytest.raises(ConfigError, match="report_to: unknown tracker 'tensorbored'"):
        from gendistill.training.tracking import check_trackers

        check_trackers(["tensorbored"])
