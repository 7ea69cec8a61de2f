"""Two processes under `accelerate launch` (gloo, CPU) build the same run as one process: the transfer set and the
teacher's logits are identical and the students equal within float tolerance; a process killed mid-label resumes
without loss or duplication. Dropout is off here: with dropout, each process draws its own masks, so N processes
match one only in distribution."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import cli_env
from safetensors.numpy import load_file


def without_dropout(source, target, keys):
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update({key: 0.0 for key in keys})
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def config_path(tmp_path_factory, task_dir, tiny_teacher_dir, tiny_gpt2_dir):
    root = tmp_path_factory.mktemp("multiprocess")
    teacher = without_dropout(
        tiny_teacher_dir, root / "teacher", ["hidden_dropout_prob", "attention_probs_dropout_prob"]
    )
    generator = without_dropout(tiny_gpt2_dir, root / "gpt2", ["resid_pdrop", "embd_pdrop", "attn_pdrop"])
    config = {
        "data": {"train": str(task_dir / "train.jsonl"), "test": str(task_dir / "test.jsonl")},
        "teacher": {"model": str(teacher), "epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "max_length": 32},
        "generator": {"model": str(generator), "epochs": 1, "batch_size": 8, "max_length": 32},
        "transfer": {
            "sources": [
                {"type": "generate", "n": 40, "max_new_tokens": 10, "batch_size": 8},
                {"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 20},
            ],
            "shard_size": 8,
            "filters": {"min_words": 1},
        },
        "student": {"init": "random", "dropout": 0.0, "embedding_dim": 16, "hidden_dim": 16, "epochs": 2},
        "evaluate": {"speed_examples": 16},
        "device": "cpu",
    }
    path = root / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def single(config_path, run_dir):
    return subprocess.run(
        [sys.executable, "-m", "gendistill.cli", "run", str(config_path), "--run-dir", str(run_dir)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def launched(config_path, run_dir, kill_at=None):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "gendistill.cli", "run", str(config_path), "--run-dir", str(run_dir)]
    return subprocess.run(command, env=cli_env(kill_at), capture_output=True, text=True, timeout=600)


def shard_tables(run_dir, folder):
    return {
        str(path.relative_to(run_dir / folder)): pq.read_table(path)
        for path in sorted((run_dir / folder).glob("*/shard-*.parquet"))
    }


@pytest.fixture(scope="module")
def reference(config_path, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("single") / "run"
    result = single(config_path, run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir


def assert_same_run(reference, run_dir):
    transfer, expected = shard_tables(run_dir, "transfer"), shard_tables(reference, "transfer")
    assert list(transfer) == list(expected)
    for name, table in expected.items():
        assert transfer[name].column("text").to_pylist() == table.column("text").to_pylist(), name
    labels, expected_labels = shard_tables(run_dir, "labels"), shard_tables(reference, "labels")
    assert list(labels) == list(expected_labels)
    for name, table in expected_labels.items():
        assert labels[name].column("text").to_pylist() == table.column("text").to_pylist(), name
        got, want = (np.array(t.column("logits").to_pylist()) for t in (labels[name], table))
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=name)
    for student in ("student", "baseline_student"):
        got, want = (load_file(str(d / student / "model.safetensors")) for d in (run_dir, reference))
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=2e-4, rtol=1e-3, err_msg=f"{student}.{name}")
    report = json.loads((run_dir / "report.json").read_text())
    assert report["transfer_set"] == json.loads((reference / "report.json").read_text())["transfer_set"]


def test_two_processes_build_the_same_run_as_one(config_path, reference, tmp_path):
    result = launched(config_path, tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(reference, tmp_path / "run")


def test_a_process_killed_mid_label_resumes_without_loss_or_duplication(config_path, reference, tmp_path):
    run_dir = tmp_path / "run"
    killed = launched(config_path, run_dir, kill_at="label.shard:2@1")
    assert killed.returncode != 0
    assert json.loads((run_dir / "manifest.json").read_text())["stages"]["label"]["status"] == "running"
    resumed = launched(config_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["label"]["summary"]["transfer_reused"] > 0  # shards labeled before the kill were kept
    assert_same_run(reference, run_dir)
