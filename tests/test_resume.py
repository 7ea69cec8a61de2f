"""Crash safety: the real CLI in a subprocess, killed (SIGKILL) at a chosen point, then rerun with the same command."""

import json
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import cli_env
from safetensors.numpy import load_file


def cli(*args, kill_at=None, cwd=None):
    env = cli_env(kill_at)
    # a parent started in the background may ignore SIGINT, and Python then never installs its Ctrl-C handler:
    # give the child the default disposition, as an interactive terminal would
    return subprocess.run(
        [sys.executable, "-m", "gendistill.cli", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.fixture()
def config_path(tmp_path, task_dir, tiny_teacher_dir):
    config = {
        "data": {"train": str(task_dir / "train.jsonl"), "test": str(task_dir / "test.jsonl")},
        "teacher": {"model": str(tiny_teacher_dir), "epochs": 2, "max_length": 32},
        "generator": {
            "model": "scratch",
            "epochs": 1,
            "scratch_layers": 1,
            "scratch_dim": 32,
            "scratch_heads": 2,
            "scratch_vocab_size": 300,
            "max_length": 32,
        },
        "transfer": {
            "sources": [{"type": "generate", "n": 48, "max_new_tokens": 10, "batch_size": 8}],
            "shard_size": 8,
            "filters": {"min_words": 1},
        },
        "student": {"embedding_dim": 8, "hidden_dim": 8, "epochs": 3, "batch_size": 16, "init": "random"},
        "evaluate": {"speed_examples": 16},
        "device": "cpu",
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def shard_texts(directory):
    return [
        t for path in sorted(directory.glob("shard-*.parquet")) for t in pq.read_table(path).column("text").to_pylist()
    ]


def valid_manifest(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert all(record["status"] == "done" for name, record in manifest["stages"].items() if record.get("applies", True))
    return manifest


def test_kill_during_generation_then_rerun_finishes_exactly(config_path, tmp_path):
    run_dir = tmp_path / "run"
    killed = cli("run", config_path, "--run-dir", run_dir, kill_at="transfer.shard:3")
    assert killed.returncode == -9, killed.stderr
    before = shard_texts(run_dir / "transfer" / "00-generate")
    assert 0 < len(before) < 48
    resumed = cli("run", config_path, "--run-dir", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming transfer" in resumed.stderr
    after = shard_texts(run_dir / "transfer" / "00-generate")
    assert len(after) == 48 == len(set(after))  # none lost, none duplicated
    assert after[: len(before)] == before
    report = json.loads((run_dir / "report.json").read_text())
    assert report["transfer_set"]["sources"][0]["kept"] == 48
    valid_manifest(run_dir)
    # the resumed set is the one an uninterrupted run makes
    clean = cli("run", config_path, "--run-dir", tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    assert shard_texts(tmp_path / "clean" / "transfer" / "00-generate") == after


def test_kill_during_labeling_keeps_labels_already_made(config_path, tmp_path):
    run_dir = tmp_path / "run"
    killed = cli("run", config_path, "--run-dir", run_dir, kill_at="label.shard:2")
    assert killed.returncode == -9
    labeled = sorted((run_dir / "labels" / "00-generate").glob("shard-*.parquet"))
    assert len(labeled) == 2
    first = {p.name: pq.read_table(p).to_pylist() for p in labeled}
    mtimes = {p.name: p.stat().st_mtime_ns for p in labeled}
    resumed = cli("run", config_path, "--run-dir", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    for name, rows in first.items():
        path = run_dir / "labels" / "00-generate" / name
        assert pq.read_table(path).to_pylist() == rows and path.stat().st_mtime_ns == mtimes[name]
    assert len(list((run_dir / "labels" / "00-generate").glob("shard-*.parquet"))) == 6
    manifest = valid_manifest(run_dir)
    assert manifest["stages"]["label"]["summary"]["transfer_reused"] == 16


def test_kill_during_student_training_resumes_to_the_same_student(config_path, tmp_path):
    run_dir = tmp_path / "run"
    assert cli("run", config_path, "--run-dir", run_dir).returncode == 0
    reference = load_file(str(run_dir / "student" / "model.safetensors"))
    killed = cli("distill", run_dir, kill_at="student.epoch:2")
    assert killed.returncode == -9
    assert (run_dir / "checkpoints" / "distill" / "state.json").exists()
    resumed = cli("run", config_path, "--run-dir", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after epoch 2" in resumed.stderr
    final = load_file(str(run_dir / "student" / "model.safetensors"))
    assert final.keys() == reference.keys()
    for name in final:
        assert (final[name] == reference[name]).all(), name
    manifest = valid_manifest(run_dir)
    assert manifest["stages"]["distill"]["summary"]["steps"] > 0
    assert not (run_dir / "checkpoints" / "distill").exists()


def test_ctrl_c_stops_cleanly_with_a_resume_hint(config_path, tmp_path):
    interrupted = cli("run", config_path, "--run-dir", tmp_path / "run", kill_at="transfer.shard:2:INT")
    assert interrupted.returncode == 130
    assert "rerun the same command to resume" in interrupted.stderr
    assert "Traceback" not in interrupted.stderr
