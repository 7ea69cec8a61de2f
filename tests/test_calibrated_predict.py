"""A stored calibration (calibration.json) travels with the model and is applied: StudentClassifier and the ONNX
Predictor divide the logits by its temperature, an export carries the file and names it in metadata.json, and
`min_confidence` answers None for a text below the threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import labeled, train_tiny_student

from gendistill.artifacts.calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationError,
    read_calibration,
    resolve_min_confidence,
)
from gendistill.artifacts.export import export_onnx
from gendistill.artifacts.inference import ExportDirError, Predictor
from gendistill.errors import ModelLoadError
from gendistill.evaluation.calibration import softmax
from gendistill.students.classifier import StudentClassifier

CALIBRATION = Calibration(
    temperature=2.5, fitted_on="validation: 30 gold-labeled texts", min_confidence=0.6, target_accuracy=0.95
)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> tuple[Path, Path]:
    """(student folder, export folder) of a trained bag student saved with CALIBRATION."""
    root = tmp_path_factory.mktemp("calibrated")
    student, _ = train_tiny_student("bag", "random", None, max_length=32)
    student.calibration = CALIBRATION
    student.save_pretrained(root / "student")
    return root / "student", export_onnx(root / "student", root / "onnx")


def texts() -> list[str]:
    return labeled(10, 1)[0] + ["zebra quasar", "rain sauce goal"]  # no empty text: Predictor refuses one (test_serve)


def test_the_predictor_divides_the_logits_by_the_stored_temperature(calibrated):
    _, export_dir = calibrated
    assert json.loads((export_dir / CALIBRATION_FILE).read_text()) == CALIBRATION.to_dict()
    assert json.loads((export_dir / "metadata.json").read_text())["calibration"] == CALIBRATION.to_dict()
    predictor = Predictor(export_dir, threads=1)
    logits = predictor.logits(texts())
    probabilities = predictor.predict_proba(texts())
    np.testing.assert_allclose(probabilities, softmax(logits, 2.5), atol=1e-6)
    np.testing.assert_allclose(predictor.predict_proba(texts(), calibrated=False), softmax(logits), atol=1e-6)
    assert np.abs(probabilities - softmax(logits)).max() > 0.01  # the temperature changed them
    assert (probabilities.argmax(axis=1) == logits.argmax(axis=1)).all()


def test_min_confidence_gives_none_below_the_threshold_in_the_predictor_and_the_student(calibrated):
    student_dir, export_dir = calibrated
    predictor = Predictor(export_dir, threads=1)
    student = StudentClassifier.from_pretrained(student_dir)
    assert student.calibration == CALIBRATION
    probabilities = predictor.predict_proba(texts())
    threshold = float(np.median(probabilities.max(axis=1)))  # about half the texts fall below
    labels = predictor.predict(texts())
    expected = [label if row.max() >= threshold else None for label, row in zip(labels, probabilities)]
    assert None in expected and any(label is not None for label in expected)
    assert predictor.predict(texts(), min_confidence=threshold) == expected
    np.testing.assert_allclose(student.predict_proba(texts()), probabilities, atol=1e-5)
    assert student.predict(texts(), min_confidence=threshold) == expected
    for bad in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="between 0 and 1"):
            predictor.predict(texts(), min_confidence=bad)


def test_stored_threshold_resolves_and_a_missing_one_is_one_clear_error(calibrated, tmp_path):
    _, export_dir = calibrated
    assert resolve_min_confidence("stored", export_dir) == 0.6
    assert resolve_min_confidence("0.7", export_dir) == 0.7
    with pytest.raises(CalibrationError, match="no calibration.json"):
        resolve_min_confidence("stored", tmp_path)
    for bad in ("1", "0", "-0.2", "high"):
        with pytest.raises(CalibrationError, match=r"--min-confidence"):
            resolve_min_confidence(bad, export_dir)


def test_a_student_saved_without_calibration_drops_a_stale_file(calibrated, tmp_path):
    student_dir, _ = calibrated
    student = StudentClassifier.from_pretrained(student_dir)
    student.save_pretrained(tmp_path / "copy")
    assert read_calibration(tmp_path / "copy") == CALIBRATION  # a re-save keeps it
    student.calibration = None
    student.save_pretrained(tmp_path / "copy")
    assert not (tmp_path / "copy" / CALIBRATION_FILE).exists()
    assert StudentClassifier.from_pretrained(tmp_path / "copy").temperature == 1.0


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "cannot read"),
        ('{"temperature": -1}', "temperature must be a positive number"),
        ('{"temperature": 2, "min_confidence": 3}', "min_confidence must be a number in [0, 1]"),
        ('{"temperature": 2, "bias": 1}', "unknown key(s) bias"),
    ],
)
def test_a_damaged_calibration_file_is_one_line_naming_it(calibrated, tmp_path, content, fragment):
    student_dir, export_dir = calibrated
    for source, loader, error in ((export_dir, Predictor, ExportDirError), (student_dir, None, ModelLoadError)):
        copy = tmp_path / source.name
        copy.mkdir()
        for path in source.iterdir():
            (copy / path.name).write_bytes(path.read_bytes())
        (copy / CALIBRATION_FILE).write_text(content)
        with pytest.raises(error) as raised:
            (loader or StudentClassifier.from_pretrained)(copy)
        message = str(raised.value)
        assert fragment in message and str(copy / CALIBRATION_FILE) in message and "\n" not in message


def test_the_server_answers_a_text_below_min_confidence_as_deferred(calibrated):
    from starlette.testclient import TestClient

    from gendistill.artifacts.serve import create_app

    _, export_dir = calibrated
    predictor = Predictor(export_dir, threads=1)
    probabilities = predictor.predict_proba(texts())
    threshold = float(np.median(probabilities.max(axis=1)))
    client = TestClient(create_app(export_dir, threads=1, min_confidence=threshold))
    assert client.get("/info").json()["min_confidence"] == threshold
    batch = client.post("/predict/batch", json={"texts": texts()}).json()["predictions"]
    for answer, row, label in zip(batch, probabilities, predictor.predict(texts())):
        assert answer["score"] == pytest.approx(float(row.max()), abs=1e-6)
        assert answer["probabilities"] == pytest.approx(dict(zip(predictor.label_names, row.tolist())), abs=1e-6)
        if row.max() < threshold:
            assert answer["label"] is None and answer["deferred"] is True
        else:
            assert answer["label"] == label and answer["deferred"] is False
    assert {answer["deferred"] for answer in batch} == {True, False}
    low = texts()[int(probabilities.max(axis=1).argmin())]
    single = client.post("/predict", json={"text": low}).json()
    assert set(single) == {"label", "deferred", "score", "probabilities"}
    assert single["label"] is None and single["deferred"] is True and single["score"] < threshold
    plain = TestClient(create_app(export_dir, threads=1)).post("/predict", json={"text": low}).json()
    assert plain["label"] == predictor.predict([low])[0] and plain["deferred"] is False
    with pytest.raises(ValueError, match="between 0 and 1"):
        create_app(export_dir, threads=1, min_confidence=1.0)


def _cli():
    from typer.testing import CliRunner

    from gendistill.cli import app

    return CliRunner(), app


def test_cli_serve_min_confidence_flags(calibrated, tmp_path, monkeypatch):
    import uvicorn

    runner, app = _cli()
    _, export_dir = calibrated
    served = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda server: served.update(app=server.config.app))
    result = runner.invoke(app, ["serve", str(export_dir), "--min-confidence", "stored", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert TestClient_info(served["app"])["min_confidence"] == 0.6
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in export_dir.iterdir():
        if path.name != CALIBRATION_FILE:
            (bare / path.name).write_bytes(path.read_bytes())
    for args, fragment in (
        ([str(export_dir), "--min-confidence", "1.5"], "--min-confidence 1.5: expected a number strictly between"),
        ([str(export_dir), "--min-confidence", "0"], "strictly between 0 and 1"),
        ([str(export_dir), "--min-confidence", "often"], "expected a number in (0, 1) or 'stored'"),
        ([str(bare), "--min-confidence", "stored"], f"{bare} has no calibration.json"),
    ):
        result = runner.invoke(app, ["serve", *args])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and fragment in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output


def TestClient_info(app) -> dict:  # noqa: N802 - reads like the client it wraps
    from starlette.testclient import TestClient

    return TestClient(app).get("/info").json()


@pytest.mark.parametrize("flag", ["--target-accuracy", "--accuracy-guarantee"])
@pytest.mark.parametrize("value", ["1.5", "0", "1", "nan"])
def test_cli_run_refuses_a_target_accuracy_or_guarantee_outside_0_1(tmp_path, flag, value):
    runner, app = _cli()
    config = tmp_path / "c.yaml"
    config.write_text("data: {train: x.jsonl}\nteacher: {model: t}\n")
    result = runner.invoke(app, ["run", str(config), flag, value, "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert flag in result.output and "between 0 and 1" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["0", "1", "1.2", "-0.5"])
def test_config_refuses_an_accuracy_guarantee_outside_0_1_naming_the_key(value):
    from gendistill.config import build_config
    from gendistill.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'evaluate\.accuracy_guarantee'") as raised:
        build_config({"data": {"train": "x"}, "teacher": {"model": "t"}}, [f"evaluate.accuracy_guarantee={value}"])
    assert "\n" not in str(raised.value)
    assert build_config({"data": {"train": "x"}, "teacher": {"model": "t"}}).evaluate.accuracy_guarantee is None


@pytest.mark.parametrize("value", ["0", "1", "1.2", "-0.5"])
def test_config_refuses_a_target_accuracy_outside_0_1_naming_the_key(value):
    from gendistill.config import build_config
    from gendistill.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'evaluate\.target_accuracy'") as raised:
        build_config({"data": {"train": "x"}, "teacher": {"model": "t"}}, [f"evaluate.target_accuracy={value}"])
    assert "\n" not in str(raised.value)
    assert build_config({"data": {"train": "x"}, "teacher": {"model": "t"}}).evaluate.target_accuracy == 0.95
