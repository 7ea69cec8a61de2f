"""Students and ONNX exports as Hugging Face Hub repos: the model card (metadata and metrics equal report.json's),
push_to_hub against a mocked Hub API, and from_pretrained of a Hub id from a pre-populated cache with
HF_HUB_OFFLINE=1. Nothing here reaches the network: HF_HUB_OFFLINE=1 (conftest) makes any real request fail."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import LABELS, labeled, make_tiny_config
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.file_download import repo_folder_name
from typer.testing import CliRunner

from gendistill.artifacts.export import export_onnx
from gendistill.artifacts.inference import Predictor
from gendistill.cli import app
from gendistill.config import StudentConfig, build_config
from gendistill.errors import ModelLoadError
from gendistill.evaluation.pages import write_report
from gendistill.evaluation.report import ModelRow, Report, SourceRow, TransferSet
from gendistill.students.building import make_student
from gendistill.students.classifier import StudentClassifier

PROBE = ["the team scored a goal", "rain and wind today", "bake the pasta sauce", "zebra"]


def make_run(root: Path, task_dir: Path, teacher_dir: Path) -> Path:
    """A run directory as the pipeline leaves it, without running it: config.yaml, student/, report.json."""
    run_dir = root / "run"
    texts, _ = labeled(5, 0)
    student = make_student(StudentConfig(arch="bag", init="random", embedding_dim=8), texts, LABELS, seed=0)
    student.info["kind"] = "student"
    student.save_pretrained(run_dir / "student")
    config = build_config(make_tiny_config(task_dir, teacher_dir))
    (run_dir / "config.yaml").write_text(config.to_yaml())
    report = Report(
        run_dir=str(run_dir),
        label_names=LABELS,
        train_examples=60,
        test_examples=30,
        teacher=ModelRow(kind="hf_encoder", params=123456, accuracy=0.9666666666666667, macro_f1=0.9651234567),
        student=ModelRow(
            kind="student", arch="bag", params=student.num_parameters, accuracy=0.9333333333333333, macro_f1=0.931
        ),
        baseline_student=ModelRow(kind="baseline_student", arch="bag", accuracy=0.7, macro_f1=0.68),
        transfer_set=TransferSet(sources=[SourceRow(type="generate", n=40, generated=44, kept=40)], kept=40),
        config_hash="abc123",
    )
    write_report(report, run_dir / "report.json")
    return run_dir


@pytest.fixture()
def run_dir(tmp_path, task_dir, tiny_teacher_dir) -> Path:
    return make_run(tmp_path, task_dir, tiny_teacher_dir)


def card_of(folder: Path) -> ModelCard:
    return ModelCard.load(folder / "README.md")


def assert_card_matches_report(card: ModelCard, report: Report, kind: str = "student") -> None:
    data = card.data.to_dict()
    assert data["library_name"] == "gendistill" and data["pipeline_tag"] == "text-classification"
    assert {"gendistill", "text-classification"} <= set(data["tags"])
    row = getattr(report, kind)
    results = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert results == {"accuracy": row.accuracy, "f1": row.macro_f1}  # exactly report.json's numbers
    block = data["gendistill"]
    assert block["labels"] == report.label_names
    assert block["student"]["accuracy"] == row.accuracy and block["student"]["macro_f1"] == row.macro_f1
    assert block["teacher"]["accuracy"] == report.teacher.accuracy
    assert block["teacher"]["macro_f1"] == report.teacher.macro_f1
    assert block["teacher"]["model"]  # the teacher's model id or folder
    assert f"{100 * row.accuracy:.1f}" in card.text and "Intended use and limits" in card.text


def test_student_card_has_the_metadata_and_the_reports_metrics(run_dir, tmp_path):
    student = StudentClassifier.from_pretrained(run_dir / "student")
    assert student.run_dir == run_dir  # found beside its report.json
    student.save_pretrained(tmp_path / "shared", repo_id="me/tiny")
    card = card_of(tmp_path / "shared")
    report = Report.read(run_dir / "report.json")
    assert_card_matches_report(card, report)
    assert card.data.to_dict()["gendistill"]["transfer_set"]["kept"] == 40
    assert 'StudentClassifier.from_pretrained("me/tiny")' in card.text
    assert "datasets" not in card.data.to_dict()  # a local file is no Hub dataset
    # a student saved without a report says so instead of inventing numbers
    bare = tmp_path / "bare"
    shutil.copytree(run_dir / "student", bare)
    StudentClassifier.from_pretrained(bare).save_pretrained(bare)
    assert card_of(bare).data.eval_results is None and "Not evaluated" in card_of(bare).text


def test_card_names_a_hub_dataset(run_dir):
    from gendistill.artifacts.card import metadata, student_facts

    config = build_config({**yaml.safe_load((run_dir / "config.yaml").read_text()), "data": {"train": "hf:ag_news"}})
    student = StudentClassifier.from_pretrained(run_dir / "student")
    meta = metadata(student_facts(student), Report.read(run_dir / "report.json"), config)
    assert meta["datasets"] == ["ag_news"]


def test_card_describes_only_what_ran(run_dir, tmp_path):
    """No generator in the prose when no source generated; no enum reprs or file names; plain YAML."""
    report = Report.read(run_dir / "report.json")
    report.transfer_set = TransferSet(sources=[SourceRow(type="file", n=None, generated=50, kept=50)], kept=50)
    config = build_config(make_tiny_config(run_dir.parent, run_dir.parent))  # enum-valued fields, a .jsonl train
    student = StudentClassifier.from_pretrained(run_dir / "student")
    student.info["init"] = config.student.init  # as make_student leaves it in memory: an Enum
    student.save_pretrained(tmp_path / "out", report=report, config=config)
    text = (tmp_path / "out" / "README.md").read_text()
    header = yaml.safe_load(text.split("---\n", 2)[1])
    assert header["gendistill"]["init"] == "teacher" and header["gendistill"]["transfer_set"]["kept"] == 50
    assert "generator" not in text and "unlabeled texts from a file" in text
    assert "EmbeddingInit" not in text and "LossKind" not in text and "train.jsonl" not in text
    assert "init `teacher`, loss `kl`" in text and "60 labeled training examples" in text
    # without a report nor a config, nothing is said about a transfer set
    bare = StudentClassifier.from_pretrained(run_dir / "student")
    bare.run_dir = None
    bare.save_pretrained(tmp_path / "bare", report=None, config=None)
    assert "transfer set" not in (tmp_path / "bare" / "README.md").read_text()


@pytest.fixture()
def mocked_hub(monkeypatch, tmp_path):
    """HfApi.create_repo/create_branch/upload_folder replaced: records the calls and copies what would be uploaded."""
    calls: dict[str, list] = {"create_repo": [], "upload_folder": [], "create_branch": []}
    uploads = tmp_path / "uploaded"

    class RepoUrl(str):
        repo_id: str

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"].append((repo_id, kwargs))
        url = RepoUrl(f"https://hub.test/{repo_id}")
        url.repo_id = repo_id
        return url

    def create_branch(self, repo_id, **kwargs):
        calls["create_branch"].append((repo_id, kwargs))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        target = uploads / repo_id
        shutil.copytree(folder_path, target)
        calls["upload_folder"].append((repo_id, kwargs))
        return f"https://hub.test/{repo_id}/commit/0123"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_branch", create_branch)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls, uploads


def test_push_to_hub_uploads_weights_and_card(run_dir, mocked_hub):
    calls, uploads = mocked_hub
    student = StudentClassifier.from_pretrained(run_dir / "student")
    url = student.push_to_hub("me/tiny-student", private=True, branch="v1")
    assert url == "https://hub.test/me/tiny-student/commit/0123"
    assert calls["create_repo"] == [("me/tiny-student", {"repo_type": "model", "private": True, "exist_ok": True})]
    assert calls["create_branch"][0][0] == "me/tiny-student"
    ((repo_id, kwargs),) = calls["upload_folder"]
    assert kwargs["revision"] == "v1" and kwargs["commit_message"] == "Upload gendistill student"
    pushed = uploads / "me/tiny-student"
    assert sorted(p.name for p in pushed.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert_card_matches_report(card_of(pushed), Report.read(run_dir / "report.json"))
    np.testing.assert_allclose(StudentClassifier.from_pretrained(pushed).logits(PROBE), student.logits(PROBE))


def test_push_offline_without_a_mock_is_a_clear_error(run_dir):
    from gendistill.errors import HubError

    with pytest.raises(HubError, match="offline"):
        StudentClassifier.from_pretrained(run_dir / "student").push_to_hub("me/never-sent")


def populate_cache(cache: Path, repo_id: str, folder: Path, commit: str = "a" * 40) -> Path:
    """Lay `folder` out as huggingface_hub's cache holds a downloaded repo: blobs named by content hash, a snapshot
    of symlinks into them, and refs/main naming the commit."""
    repo = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_from_pretrained_loads_a_hub_id_offline_from_the_cache(run_dir, tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    populate_cache(cache, "me/tiny-student", run_dir / "student")
    expected = StudentClassifier.from_pretrained(run_dir / "student").logits(PROBE)
    loaded = StudentClassifier.from_pretrained("me/tiny-student", cache_dir=cache)
    np.testing.assert_allclose(loaded.logits(PROBE), expected)
    assert loaded.label_names == LABELS and loaded.run_dir is None
    # the default cache (HF_HUB_CACHE) in a fresh process, as a user would: HF_HUB_OFFLINE=1, nothing but the id
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    script = (
        "from gendistill import StudentClassifier\n"
        f"print(StudentClassifier.from_pretrained('me/tiny-student').predict({PROBE!r}))"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(loaded.predict(PROBE))
    # the CLI takes the id too
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    result = CliRunner().invoke(app, ["predict", "me/tiny-student", PROBE[0]])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == loaded.predict(PROBE[:1])[0]


def test_from_pretrained_of_an_uncached_id_offline_says_so(tmp_path):
    with pytest.raises(ModelLoadError, match=r"not in the Hugging Face cache .* offline \(HF_HUB_OFFLINE=1\)"):
        StudentClassifier.from_pretrained("me/not-cached", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="no such folder"):
        StudentClassifier.from_pretrained("./runs/nowhere/student")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"not a gendistill student \(config.json missing\)"):
        StudentClassifier.from_pretrained(tmp_path / "empty")


def test_onnx_export_has_a_card_and_loads_from_the_hub_cache(run_dir, tmp_path, mocked_hub):
    calls, uploads = mocked_hub
    export_dir = export_onnx(run_dir, tmp_path / "onnx")
    card = card_of(export_dir)
    assert_card_matches_report(card, Report.read(run_dir / "report.json"))
    assert "onnx" in card.data.tags and "Predictor.from_pretrained" in card.text
    snapshot_cache = tmp_path / "hf-cache"
    populate_cache(snapshot_cache, "me/tiny-onnx", export_dir)
    predictor = Predictor.from_pretrained("me/tiny-onnx", cache_dir=snapshot_cache, threads=1)
    np.testing.assert_allclose(predictor.logits(PROBE), Predictor(export_dir, threads=1).logits(PROBE))
    # push an export folder from the CLI: the card is rewritten for the repo id, the files are the export's
    result = CliRunner().invoke(app, ["push", str(export_dir), "me/tiny-onnx", "-m", "first"])
    assert result.exit_code == 0, result.output
    assert "pushed: https://hub.test/me/tiny-onnx/commit/0123" in result.output
    pushed = uploads / "me/tiny-onnx"
    assert sorted(p.name for p in pushed.iterdir()) == [
        "README.md",
        "labels.json",
        "metadata.json",
        "model.onnx",
        "tokenizer.json",
    ]
    assert 'Predictor.from_pretrained("me/tiny-onnx")' in card_of(pushed).text
    published = json.loads((pushed / "metadata.json").read_text())
    assert published["run_dir"] == "run" and published["source"] == "student"  # no local paths on the Hub
    assert Predictor(pushed, threads=1).predict(PROBE) == predictor.predict(PROBE)
    assert calls["upload_folder"][0][1]["commit_message"] == "first"


def test_cli_push_local_dir_writes_the_repo_without_uploading(run_dir, tmp_path):
    result = CliRunner().invoke(app, ["push", str(run_dir), "me/tiny", "--local-dir", str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    assert "nothing uploaded" in result.output
    assert_card_matches_report(card_of(tmp_path / "repo"), Report.read(run_dir / "report.json"))
    again = CliRunner().invoke(app, ["push", str(run_dir), "me/tiny", "--local-dir", str(tmp_path / "repo")])
    assert again.exit_code == 2 and "not an empty folder" in again.output
    missing = CliRunner().invoke(app, ["push", str(tmp_path / "nothing"), "me/tiny"])
    assert missing.exit_code == 2 and "no such run directory" in missing.output


def test_cli_push_without_a_reachable_hub_is_one_line(run_dir):
    """A connection refused (HF_ENDPOINT on a closed local port, online mode, a fake token) is one error line and
    exit 2, not the HTTP client's traceback. A subprocess: huggingface_hub reads HF_ENDPOINT once, at import."""
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_fake", "GENDISTILL_PROGRESS": "0"}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # huggingface_hub reads either as offline mode
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "gendistill.cli", "push", str(run_dir), "me/never-sent"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert len(output.splitlines()) == 1, output
    assert "cannot be reached" in output and "127.0.0.1:9" in output and "Traceback" not in output
