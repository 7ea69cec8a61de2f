"""The `setfit` teacher: SetFit's trainer on a tiny random-init BERT, saved without pickle, labeling with the head's
decision function; the whole pipeline distils a student from it."""

import numpy as np
import pytest
from conftest import LABELS, labeled, make_rows, make_tiny_config

from gendistill import Run, StudentClassifier
from gendistill.config import build_config
from gendistill.data.task import LabeledSet
from gendistill.errors import ConfigError, ModelLoadError
from gendistill.runtime import make_accelerator
from gendistill.teachers import FitContext
from gendistill.teachers.setfit import head_weights, one_vs_rest_weights

pytest.importorskip("setfit")


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_saved_head_gives_the_logistic_regressions_probabilities(n_classes):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    y = np.arange(60) % n_classes
    x[:, 0] += y  # learnable
    head = LogisticRegression().fit(x, y)
    weight, bias = head_weights(head, n_classes, [str(i) for i in range(n_classes)])
    assert weight.shape == (n_classes, 5) and bias.shape == (n_classes,)
    np.testing.assert_allclose(softmax(x @ weight.T + bias), head.predict_proba(x), atol=1e-5)


def test_a_class_without_labeled_examples_is_named():
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 2, 0, 2])
    with pytest.raises(ConfigError, match="no example of class 'b'"):
        head_weights(head, 3, ["a", "b", "c"])


def test_a_one_vs_rest_head_gives_each_labels_log_odds():
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4)).astype(np.float32)
    y = (rng.random((80, 3)) < 0.4).astype(int)
    x[:, :3] += 2 * y  # each label learnable from its own feature
    head = OneVsRestClassifier(LogisticRegression()).fit(x, y)
    weight, bias = one_vs_rest_weights(head, ["a", "b", "c"])
    assert weight.shape == (3, 4) and bias.shape == (3,)
    np.testing.assert_allclose(1 / (1 + np.exp(-(x @ weight.T + bias))), head.predict_proba(x), atol=1e-5)
    constant = OneVsRestClassifier(LogisticRegression()).fit(x, np.column_stack([y[:, :2], np.ones(80, int)]))
    with pytest.raises(ConfigError, match="label 'c' is on every labeled text or on none"):
        one_vs_rest_weights(constant, ["a", "b", "c"])


def test_a_multi_label_setfit_teacher_answers_two_labels_and_none(tiny_teacher_dir, tmp_path):
    import random

    import torch
    from conftest import TOPICS

    names = sorted(TOPICS)
    rng = random.Random(0)

    def rows(n):
        texts, sets = [], []
        for _ in range(n):
            chosen = sorted(rng.sample(range(3), rng.choice([0, 1, 1, 2])))
            words = [w for i in chosen for w in rng.sample(TOPICS[names[i]], 2)] + ["the", "we", "saw"]
            rng.shuffle(words)
            texts.append(" ".join(words))
            sets.append(chosen)
        return texts, sets

    texts, sets = rows(60)
    config = setfit_teacher(tiny_teacher_dir, body_learning_rate=1e-3, epochs=2)
    ctx = FitContext(
        LabeledSet(texts, sets),
        names,
        tmp_path / "t",
        tmp_path / "c",
        make_accelerator("cpu", "no", 0),
        0,
        multi_label=True,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config.fit(ctx)
        test_texts, test_sets = rows(40)
        logits = config.load(tmp_path / "t", "cpu").logits(test_texts, 16)
    finally:
        torch.set_num_threads(threads)
    predicted = 1 / (1 + np.exp(-logits)) >= 0.5
    truth = np.array([[i in row for i in range(3)] for row in test_sets])
    assert (predicted == truth).mean() >= 0.85  # per-label decisions; a softmax head could not give two or none
    two = [i for i, row in enumerate(test_sets) if len(row) == 2]
    assert predicted[two].sum(axis=1).mean() >= 1.5


def setfit_teacher(tiny_teacher_dir, **fields):
    raw = {
        "data": {"train": "unused.jsonl"},
        "teacher": {"kind": "setfit", "model": str(tiny_teacher_dir), "num_iterations": 5, "max_length": 32, **fields},
    }
    return build_config(raw).teacher


@pytest.fixture(scope="module")
def fitted(tiny_teacher_dir, tmp_path_factory):
    """(config, stats, teacher folder): the tiny BERT body trained by SetFit on the fixture's 20 texts per class."""
    import torch

    config = setfit_teacher(tiny_teacher_dir, body_learning_rate=1e-3, epochs=2)
    root = tmp_path_factory.mktemp("setfit")
    texts, gold = labeled(20, 0)
    ctx = FitContext(
        LabeledSet(texts, gold),
        LABELS,
        root / "teacher",
        root / "checkpoints" / "teacher",
        make_accelerator("cpu", "no", 0),
        0,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats = config.fit(ctx)
    finally:
        torch.set_num_threads(threads)
    return config, stats, root / "teacher"


def test_the_fitted_teacher_is_saved_without_pickle_and_labels_the_test_rows(fitted):
    config, stats, folder = fitted
    assert stats["pairs"] == 2 * 5 * 60 * 2
    assert (folder / "head.safetensors").exists() and list(folder.glob("*.safetensors"))
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.bin"))
    assert not folder.with_name("teacher.tmp").exists()
    teacher = config.load(folder, "cpu")
    rows = make_rows(10, 1)
    logits = teacher.logits([row["text"] for row in rows], batch_size=7)
    assert logits.shape == (30, 3) and logits.dtype == np.float32 and np.isfinite(logits).all()
    accuracy = np.mean([LABELS[i] == row["label"] for i, row in zip(logits.argmax(axis=1), rows, strict=True)])
    assert accuracy >= 0.8  # keyword topics: a contrastively trained body separates them; chance is 1/3
    # the same texts in another order and batch size give the same rows (encode restores input order)
    again = teacher.logits([row["text"] for row in reversed(rows)], batch_size=64)[::-1]
    np.testing.assert_allclose(again, logits, rtol=1e-4, atol=1e-5)
    described = teacher.describe()
    assert described["params"] > 3 * 32 and described["size_bytes"] > 0


def test_a_pipeline_distils_a_student_from_a_setfit_teacher(task_dir, tiny_teacher_dir, tmp_path):
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["teacher"] = {"kind": "setfit", "model": str(tiny_teacher_dir), "num_iterations": 2, "max_length": 32}
    report = Run(build_config(config), tmp_path / "run").run()
    assert report.teacher.accuracy is not None and report.student.accuracy is not None
    assert report.teacher.params > report.student.params
    manifest = (tmp_path / "run" / "manifest.json").read_text()
    assert '"kind": "setfit"' in manifest
    student = StudentClassifier.from_pretrained(tmp_path / "run" / "student")
    card = student.write_card(tmp_path / "card").read_text()
    assert "(setfit), trained with SetFit on the labeled examples" in card


def test_a_missing_setfit_package_is_one_clear_line(monkeypatch, tiny_teacher_dir):
    import importlib.util

    from gendistill.teachers import setfit as module

    real = importlib.util.find_spec
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None if name == "setfit" else real(name))
    with pytest.raises(ModelLoadError, match=r"pip install 'gendistill\[setfit\]'"):
        setfit_teacher(tiny_teacher_dir).check()


def test_pickle_only_folders_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    raw = {"data": {"train": "unused.jsonl"}, "teacher": {"kind": "setfit", "model": str(tmp_path)}}
    with pytest.raises(ModelLoadError, match="pickle weights"):
        build_config(raw).teacher.check()
