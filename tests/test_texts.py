"""One rule for "texts" in every predict path (StudentClassifier, the ONNX Predictor, the CLI; the estimator's is in
test_api.py): a batch may be a list, tuple, numpy array, pandas Series (any index) or datasets column; a bare string
is a TypeError that says to wrap it, never a batch of its characters; a table is an error naming the column to pass."""

from __future__ import annotations

import datasets
import numpy as np
import pandas as pd
import pytest
from conftest import LABELS, labeled
from typer.testing import CliRunner

from gendistill.artifacts.export import export_onnx
from gendistill.artifacts.inference import Predictor
from gendistill.cli import app
from gendistill.config import StudentConfig
from gendistill.data.texts import as_labels, as_texts
from gendistill.students.building import make_student

TEXTS = ["the team scored a goal", "rain and wind today", "bake the pasta sauce"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(student, its ONNX predictor, the student folder, the export folder)."""
    root = tmp_path_factory.mktemp("texts")
    texts, _ = labeled(5, 0)
    student = make_student(StudentConfig(arch="bag", init="random", embedding_dim=8), texts, LABELS, seed=0)
    student.save_pretrained(root / "student")
    export_dir = export_onnx(root / "student", root / "onnx")
    return student, Predictor(export_dir, threads=1), root / "student", export_dir


def batches():
    """The same three texts in every accepted container."""
    return {
        "list": list(TEXTS),
        "tuple": tuple(TEXTS),
        "numpy": np.array(TEXTS),
        "numpy object": np.array(TEXTS, dtype=object),
        "pandas Series with a non-default index": pd.Series(TEXTS, index=[7, 3, 11]),
        "datasets column": datasets.Dataset.from_dict({"text": TEXTS})["text"],
        "generator": (text for text in TEXTS),
    }


@pytest.mark.parametrize("kind", list(batches()))
def test_every_predict_path_accepts_any_batch(kind, models):
    student, predictor, _, _ = models
    expected = student.predict(TEXTS)
    assert student.predict(batches()[kind]) == expected
    np.testing.assert_allclose(student.predict_proba(batches()[kind]), student.predict_proba(TEXTS))
    assert predictor.predict(batches()[kind]) == expected
    np.testing.assert_allclose(predictor.logits(batches()[kind]), student.logits(TEXTS), atol=1e-4)


def test_every_predict_path_rejects_a_bare_string(models):
    student, predictor, _, _ = models
    calls = {
        "StudentClassifier.predict": student.predict,
        "StudentClassifier.predict_proba": student.predict_proba,
        "StudentClassifier.logits": student.logits,
        "Predictor.predict": predictor.predict,
        "Predictor.predict_proba": predictor.predict_proba,
        "Predictor.logits": predictor.logits,
        "Predictor.token_ids": predictor.token_ids,
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=r"not one string; wrap a single text in a list: \[text\]"):
            call("the team scored a goal")
        assert len(call(["the team scored a goal"])) == 1, name


@pytest.mark.parametrize("which", ["student", "export"])
def test_cli_predict_takes_each_argument_as_one_text(which, models):
    _, _, student_dir, export_dir = models
    folder = student_dir if which == "student" else export_dir
    result = CliRunner().invoke(app, ["predict", str(folder), "the team scored a goal"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [models[0].predict(["the team scored a goal"])[0]]
    two = CliRunner().invoke(app, ["predict", str(folder), TEXTS[0], TEXTS[1], "--json"])
    assert two.exit_code == 0 and len(two.output.strip().splitlines()) == 2


def test_tables_and_non_texts_are_errors_that_say_what_to_pass():
    frame = pd.DataFrame({"text": TEXTS, "label": [0, 1, 2]})
    with pytest.raises(TypeError, match=r"whole table \(DataFrame with columns \['text', 'label'\]\).*table\['text'\]"):
        as_texts(frame)
    with pytest.raises(TypeError, match="whole table .*Dataset"):
        as_texts(datasets.Dataset.from_pandas(frame))
    with pytest.raises(TypeError, match=r"texts\[1\] is int \(5\), not a string"):
        as_texts(["a", 5])
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        as_texts([None])
    with pytest.raises(TypeError, match="one-dimensional"):
        as_texts(np.array([TEXTS, TEXTS]))
    with pytest.raises(TypeError, match="got a dict"):
        as_texts({"text": TEXTS})
    with pytest.raises(TypeError, match="got int"):
        as_texts(3)
    assert as_texts([]) == []
    assert as_labels(np.array([1, 0, 2]), 3) == [1, 0, 2] and type(as_labels(np.array([1]), 1)[0]) is int
    with pytest.raises(ValueError, match="2 labels for 3 texts"):
        as_labels(["a", "b"], 3)
    with pytest.raises(TypeError, match="not one string"):
        as_labels("abc", 3)
