"""The cascade (`gendistill serve EXPORT --min-confidence P --fallback URL`): texts the student defers go to the
fallback, the run's teacher served by `gendistill serve-teacher RUN_DIR` or an OpenAI-compatible LLM; every answer
says which model gave it; texts above the threshold never leave the student; a fallback outage degrades to the
student's own label, flagged, with status 200; GET /metrics counts and times both paths. Bad setups are one line,
exit 2. Both servers are real uvicorn servers on 127.0.0.1, built by the real CLI commands."""

from __future__ import annotations

import json
import shutil
import socket
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from conftest import LABELS, labeled, make_tiny_config, train_tiny_student
from test_serve import serving

from gendistill.artifacts.calibration import Calibration
from gendistill.artifacts.export import export_onnx
from gendistill.artifacts.inference import Predictor
from gendistill.pipeline.layout import RunLayout

CALIBRATION = Calibration(temperature=2.5, fitted_on="validation: 30 gold-labeled texts", min_confidence=0.6)


def probe_texts() -> list[str]:
    return labeled(10, 1)[0] + ["zebra quasar", "rain sauce goal", "the oven was sunny", "goal storm"]


@pytest.fixture(scope="module")
def cascade_export(tmp_path_factory) -> tuple[Path, float]:
    """(a calibrated single-label export, a threshold between two of its probe scores that defers about half)."""
    root = tmp_path_factory.mktemp("cascade")
    student, _ = train_tiny_student("bag", "random", None, max_length=32)
    student.calibration = CALIBRATION
    student.save_pretrained(root / "student")
    export_dir = export_onnx(root / "student", root / "onnx")
    scores = np.sort(Predictor(export_dir, threads=1).predict_proba(probe_texts()).max(axis=1))
    middle = len(scores) // 2
    return export_dir, float((scores[middle - 1] + scores[middle]) / 2)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, task_dir, tiny_teacher_dir) -> Path:
    """A run directory holding what `serve-teacher` reads: config.yaml, data/labels.json and a teacher folder (the
    tiny BERT with a classification head for the fixture labels)."""
    from gendistill.teachers.hf_encoder import load_teacher

    layout = RunLayout(tmp_path_factory.mktemp("teacher_run"))
    layout.config.write_text(yaml.safe_dump(make_tiny_config(task_dir, tiny_teacher_dir)))
    layout.data.mkdir()
    layout.label_names.write_text(json.dumps(LABELS))
    model, tokenizer = load_teacher(str(tiny_teacher_dir), num_labels=len(LABELS), label_names=LABELS)
    model.save_pretrained(layout.teacher)
    tokenizer.save_pretrained(layout.teacher)
    return layout.root


def cli(args: list[str], monkeypatch) -> Any:
    """Run `gendistill ARGS` in process; the app it would serve (uvicorn.Server.run is stopped), or the result
    when it exits."""
    import uvicorn
    from typer.testing import CliRunner

    from gendistill.cli import app

    served: dict[str, Any] = {}
    with monkeypatch.context() as patch:  # undone at once: the tests then serve the app for real
        patch.setattr(uvicorn.Server, "run", lambda server: served.update(app=server.config.app))
        result = CliRunner().invoke(app, args)
    return served.get("app", result)


class Recording:
    """Wraps the served teacher's `logits`, recording every text that reached it."""

    def __init__(self, teacher):
        self.teacher, self.seen = teacher, []

    def logits(self, texts, batch_size):
        self.seen.extend(texts)
        return self.teacher.logits(texts, batch_size)


def test_cascade_routes_deferred_texts_to_the_served_teacher_and_survives_its_outage(
    cascade_export, teacher_run, monkeypatch
):
    from gendistill.artifacts import teacher_server

    export_dir, threshold = cascade_export
    recording: dict[str, Recording] = {}
    load = teacher_server.load_run_teacher

    def recorded(run_dir):
        teacher, labels, batch_size = load(run_dir)
        recording["teacher"] = Recording(teacher)
        return recording["teacher"], labels, batch_size

    monkeypatch.setattr(teacher_server, "load_run_teacher", recorded)
    # at most 2 texts per request: the student's server splits the deferred texts into several requests
    teacher_app = cli(["serve-teacher", str(teacher_run), "--port", "9", "--max-texts", "2"], monkeypatch)
    predictor = Predictor(export_dir, threads=1)
    probabilities = predictor.predict_proba(probe_texts())
    deferred = [text for text, row in zip(probe_texts(), probabilities) if row.max() < threshold]
    assert 0 < len(deferred) < len(probe_texts())
    with ExitStack() as teacher_stack, ExitStack() as student_stack:
        teacher_url = teacher_stack.enter_context(serving(teacher_app))
        assert httpx.get(f"{teacher_url}/info").json()["labels"] == LABELS
        teacher_labels = {
            text: httpx.post(f"{teacher_url}/predict/batch", json={"texts": [text]}).json()["predictions"][0]["label"]
            for text in deferred
        }
        recording["teacher"].seen.clear()
        args = ["serve", str(export_dir), "--min-confidence", repr(threshold), "--fallback", teacher_url]
        url = student_stack.enter_context(serving(cli([*args, "--threads", "1"], monkeypatch)))
        batch = httpx.post(f"{url}/predict/batch", json={"texts": probe_texts()}).json()["predictions"]
        for text, answer, row in zip(probe_texts(), batch, probabilities):
            if row.max() < threshold:
                assert answer["model"] == "fallback" and answer["label"] == teacher_labels[text], answer
                assert answer["deferred"] is True and answer["fallback_error"] is False
            else:
                assert answer["model"] == "student" and answer["deferred"] is False
                assert answer["label"] == LABELS[int(row.argmax())] and answer["fallback_error"] is False
        # the texts above the threshold never left the student: the teacher saw exactly the deferred ones
        assert sorted(recording["teacher"].seen) == sorted(deferred)
        confident = next(t for t, row in zip(probe_texts(), probabilities) if row.max() >= threshold)
        assert httpx.post(f"{url}/predict", json={"text": confident}).json()["model"] == "student"
        metrics = httpx.get(f"{url}/metrics").json()
        assert metrics["cascade"] is True
        assert metrics["texts"] == {
            "student": len(probe_texts()) - len(deferred) + 1,
            "escalated": len(deferred),
            "fallback": len(deferred),
            "fallback_errors": 0,
        }
        latency = metrics["latency_seconds"]
        assert latency["fallback"]["count"] == 1 and latency["student"]["count"] == 1
        assert 0 < latency["student"]["p50"] <= latency["student"]["p99"]
        assert latency["fallback"]["mean"] > 0

        teacher_stack.close()  # the outage: the teacher's server stops; the student's goes on
        response = httpx.post(f"{url}/predict", json={"text": deferred[0]})
        assert response.status_code == 200
        answer = response.json()
        row = predictor.predict_proba([deferred[0]])[0]
        assert answer["model"] == "student" and answer["fallback_error"] is True and answer["deferred"] is True
        assert answer["label"] == LABELS[int(row.argmax())]
        counts = httpx.get(f"{url}/metrics").json()["texts"]
        assert counts["fallback_errors"] == 1 and counts["escalated"] == len(deferred) + 1


class StubTeacher:
    """Logits 0, 1, 2, ... for every text: the last label wins."""

    def __init__(self, width: int):
        self.width = width

    def logits(self, texts, batch_size):
        return np.tile(np.arange(self.width, dtype=np.float32), (len(texts), 1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_line_exit_2(result: Any, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert fragment in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_bad_cascade_setups_are_one_line_and_exit_2(cascade_export, tmp_path, monkeypatch):
    from gendistill.artifacts.teacher_server import create_teacher_app

    export_dir, threshold = cascade_export
    serve = ["serve", str(export_dir), "--threads", "1"]
    nobody = f"http://127.0.0.1:{free_port()}"
    result = cli([*serve, "--fallback", nobody], monkeypatch)
    one_line_exit_2(result, "--fallback needs --min-confidence")
    result = cli([*serve, "--min-confidence", "0.5", "--fallback", nobody], monkeypatch)
    one_line_exit_2(result, f"--fallback {nobody}: no gendistill server answers GET /info")
    result = cli([*serve, "--min-confidence", "0.5", "--fallback-model", "m"], monkeypatch)
    one_line_exit_2(result, "--fallback-model and --fallback-cache need --fallback URL")
    # a fallback with a label the student does not know
    other = create_teacher_app(StubTeacher(3), ["cooking", "space", "weather"])
    with serving(other) as url:
        result = cli([*serve, "--min-confidence", "0.5", "--fallback", url], monkeypatch)
        one_line_exit_2(result, "its labels space are not labels of the student (cooking, sports, weather)")
    # a multi-label export (the same graph, declared multi-label with per-label thresholds)
    multi = tmp_path / "multi"
    shutil.copytree(export_dir, multi)
    metadata = json.loads((multi / "metadata.json").read_text())
    (multi / "metadata.json").write_text(json.dumps({**metadata, "multi_label": True, "thresholds": [0.5] * 3}))
    with serving(create_teacher_app(StubTeacher(3), LABELS)) as url:
        result = cli(["serve", str(multi), "--min-confidence", "0.5", "--fallback", url], monkeypatch)
        one_line_exit_2(result, "is a multi-label export; a cascade answers one label per text")
    # serve-teacher on a folder that is no run
    one_line_exit_2(cli(["serve-teacher", str(tmp_path)], monkeypatch), "no config.yaml")


def test_a_malformed_or_unknown_fallback_answer_is_a_flagged_student_answer(cascade_export):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.testclient import TestClient

    from gendistill.artifacts.cascade import ServedFallback
    from gendistill.artifacts.serve import create_app

    export_dir, threshold = cascade_export
    answers: list[Any] = []
    fake = FastAPI()

    @fake.get("/info")
    def info() -> dict[str, Any]:
        return {"labels": LABELS}

    @fake.post("/predict/batch")
    def batch() -> Any:
        return JSONResponse({"error": "overloaded"}, status_code=503) if answers[-1] == 503 else answers[-1]

    low = min(probe_texts(), key=lambda t: Predictor(export_dir, threads=1).predict_proba([t]).max())
    with serving(fake) as url:
        fallback = ServedFallback(url, LABELS)
        client = TestClient(create_app(export_dir, threads=1, min_confidence=threshold, fallback=fallback))
        for answer in ({"predictions": [{"label": "space"}]}, {"nothing": 1}, {"predictions": []}, 503):
            answers.append(answer)
            response = client.post("/predict", json={"text": low})
            assert response.status_code == 200
            assert response.json()["fallback_error"] is True and response.json()["model"] == "student"
        answers.append({"predictions": [{"label": "sports"}]})
        answer = client.post("/predict", json={"text": low}).json()
        assert answer["label"] == "sports" and answer["model"] == "fallback" and answer["fallback_error"] is False


def deferred_texts(export_dir: Path, threshold: float) -> tuple[list[str], list[str]]:
    """(the probe texts the student defers at `threshold`, the others)."""
    scores = Predictor(export_dir, threads=1).predict_proba(probe_texts()).max(axis=1)
    return (
        [text for text, score in zip(probe_texts(), scores) if score < threshold],
        [text for text, score in zip(probe_texts(), scores) if score >= threshold],
    )


def test_an_llm_fallback_is_asked_through_the_llm_teacher(cascade_export, tmp_path, monkeypatch):
    from llm_servers import FakeOpenAI, topic_of

    export_dir, threshold = cascade_export
    deferred, confident = deferred_texts(export_dir, threshold)
    fake = FakeOpenAI().start()  # first-token log-probabilities, the text's fixture topic most likely
    try:
        args = ["serve", str(export_dir), "--threads", "1", "--min-confidence", repr(threshold)]
        fallback = ["--fallback", fake.url, "--fallback-model", "fake", "--fallback-cache", str(tmp_path / "llm")]
        app = cli([*args, *fallback], monkeypatch)
        with serving(app) as url:
            fake.requests.clear()
            batch = httpx.post(f"{url}/predict/batch", json={"texts": probe_texts()}).json()["predictions"]
            for text, answer in zip(probe_texts(), batch):
                if text in deferred:
                    assert answer["model"] == "fallback" and answer["label"] == topic_of(text), answer
                else:
                    assert answer["model"] == "student" and answer["fallback_error"] is False
            prompts = [json.dumps(request["body"]) for request in fake.requests]
            assert len(prompts) == len(deferred)  # one logprobs request per deferred text, none for the others
            assert not any(json.dumps(text)[1:-1] in prompt for text in confident for prompt in prompts)
            assert (tmp_path / "llm" / "cache" / "llm-requests.sqlite").is_file()  # the llm teacher's cache
            fake.stop()  # the outage; a text not asked before (the teacher's cache would answer a known one)
            predictor = Predictor(export_dir, threads=1)
            unseen = [f"{text} again" for text in deferred] + [f"{text} and then" for text in deferred]
            new = next(t for t in unseen if predictor.predict_proba([t]).max() < threshold)
            response = httpx.post(f"{url}/predict", json={"text": new})
            assert response.status_code == 200
            assert response.json() | {"label": None} == response.json() | {
                "label": None,
                "model": "student",
                "fallback_error": True,
                "deferred": True,
            }
            assert httpx.get(f"{url}/metrics").json()["texts"]["fallback"] == len(deferred)
    finally:
        fake.stop()
    result = cli([*args, *fallback], monkeypatch)  # the LLM is gone: it does not answer at start
    one_line_exit_2(result, f"--fallback {fake.url} --fallback-model fake: the LLM did not answer a probe request")


def test_an_llm_answer_that_names_no_label_is_a_fallback_failure(tmp_path):
    from llm_servers import FakeOpenAI

    from gendistill.artifacts.llm_fallback import LLMFallback

    with FakeOpenAI() as fake:
        fallback = LLMFallback(fake.url, "fake", LABELS, cache_dir=tmp_path)
        assert fallback.classify(["rain storm today"]) == ["weather"]
        fallback.teacher = type("Uniform", (), {"logits": lambda self, texts, n: np.zeros((len(texts), 3))})()
        assert fallback.classify(["rain storm today"]) == [None]  # a failure for that text: flagged


def test_transformers_serve_as_the_llm_fallback(cascade_export, served_lm, tiny_chat_lm_dir, monkeypatch):
    """A real OpenAI-compatible server (its answers are noise, the protocol real): every deferred text is answered
    by the LLM with a label the student knows, or, when its sampled answers named none, by the student, flagged;
    never an error."""
    export_dir, threshold = cascade_export
    deferred, _ = deferred_texts(export_dir, threshold)
    args = ["serve", str(export_dir), "--threads", "1", "--min-confidence", repr(threshold)]
    app = cli([*args, "--fallback", served_lm, "--fallback-model", str(tiny_chat_lm_dir)], monkeypatch)
    with serving(app) as url:
        response = httpx.post(f"{url}/predict/batch", json={"texts": deferred[:2]}, timeout=120)
        assert response.status_code == 200
        for answer in response.json()["predictions"]:
            assert answer["deferred"] is True and answer["label"] in LABELS
            assert (answer["model"], answer["fallback_error"]) in {("fallback", False), ("student", True)}
        assert httpx.get(f"{url}/metrics").json()["texts"]["escalated"] == 2


def test_metrics_percentiles_are_nearest_rank_over_the_window():
    from gendistill.artifacts.cascade import Metrics

    metrics = Metrics()
    seconds = [0.5, 0.1, 0.4, 0.2, 0.3] * 20  # 100 requests
    for value in seconds:
        metrics.time("student", value)
    ordered = sorted(seconds)
    student = metrics.to_dict()["latency_seconds"]["student"]
    assert student == {"count": 100, "mean": pytest.approx(0.3), "p50": ordered[49], "p99": ordered[98]}
    assert metrics.to_dict()["latency_seconds"]["fallback"] == {"count": 0, "mean": None, "p50": None, "p99": None}
