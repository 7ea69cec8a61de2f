"""Crash safety: the real CLI in a subprocess, killed (SIGKILL) at a chosen point, then rerun with the same command."""

import json
import shutil
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
    return write_config(tmp_path, task_dir, tiny_teacher_dir)


def write_config(tmp_path, task_dir, tiny_teacher_dir):
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


@pytest.fixture(scope="module")
def killed_in_distill(tmp_path_factory, task_dir, tiny_teacher_dir):
    """(config, a finished run's student weights, a copy of that run killed after epoch 2 of distill with its
    checkpoint): the run each damaged-checkpoint test copies, damages and resumes."""
    root = tmp_path_factory.mktemp("killed_in_distill")
    config_path = write_config(root, task_dir, tiny_teacher_dir)
    run_dir = root / "run"
    assert cli("run", config_path, "--run-dir", run_dir).returncode == 0
    reference = load_file(str(run_dir / "student" / "model.safetensors"))
    assert cli("distill", run_dir, kill_at="student.epoch:2").returncode == -9
    assert (run_dir / "checkpoints" / "distill" / "state.json").exists()
    return config_path, reference, run_dir


def damage_checkpoint(checkpoint, damage):
    """Damage one file of a checkpoint as a full disk, a copy or a hand edit would; returns the file."""
    state = checkpoint / "state.json"
    if damage == "truncated_optimizer":
        target = checkpoint / "optimizer.pt"
        target.write_bytes(target.read_bytes()[:200])
    elif damage == "truncated_optimizer_unchecked":  # a checkpoint written before checksums: torch.load fails
        target = checkpoint / "optimizer.pt"
        recorded = json.loads(state.read_text())
        recorded.pop("sha256", None)
        state.write_text(json.dumps(recorded))
        target.write_bytes(target.read_bytes()[:200])
    elif damage == "malformed_state":
        target = state
        target.write_text("{epoch: 2,")
    elif damage == "truncated_state":
        target = state
        target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    elif damage == "edited_weights":  # still valid safetensors: only the checksum tells
        from safetensors.torch import load_file as load_torch
        from safetensors.torch import save_file as save_torch

        target = checkpoint / "model.safetensors"
        weights = load_torch(str(target))
        name = next(iter(weights))
        weights[name] = weights[name] + 1.0
        save_torch(weights, str(target))
    else:
        target = checkpoint / "optimizer.pt"
        target.unlink()
    return target


@pytest.mark.parametrize(
    "damage",
    [
        "truncated_optimizer",
        "truncated_optimizer_unchecked",
        "malformed_state",
        "truncated_state",
        "edited_weights",
        "missing_optimizer",
    ],
)
def test_a_damaged_checkpoint_is_named_and_the_stage_restarts_from_its_last_good_state(
    killed_in_distill, tmp_path, damage
):
    """It was a traceback (or, for edited weights, a silently different student), and the run could not resume
    without deleting the checkpoint by hand. Now one warning names the file, distill trains again from its start
    (the one checkpoint kept was its only saved state), and the student is the uninterrupted run's, bit for bit."""
    config_path, reference, killed = killed_in_distill
    run_dir = tmp_path / "run"
    shutil.copytree(killed, run_dir)
    target = damage_checkpoint(run_dir / "checkpoints" / "distill", damage)
    resumed = cli("run", config_path, "--run-dir", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if "is damaged" in line]
    assert len(warnings) == 1 and str(target) in warnings[0], resumed.stderr
    assert "restarts from its last good state" in warnings[0]
    assert "resumed after epoch" not in resumed.stderr
    final = load_file(str(run_dir / "student" / "model.safetensors"))
    assert final.keys() == reference.keys()
    for name in final:
        assert (final[name] == reference[name]).all(), name
    valid_manifest(run_dir)
    assert not (run_dir / "checkpoints" / "distill").exists()


def test_the_resume_message_says_resuming_only_when_there_is_something_to_resume_from(tmp_path):
    """With the real stages' outputs: distill killed before its first checkpoint (its example store already built)
    starts its training over, and says so; transfer resumes from the shards it saved."""
    import gendistill.stages  # noqa: F401 - registers the stages
    from gendistill.pipeline.graph import pipeline
    from gendistill.pipeline.layout import RunLayout
    from gendistill.pipeline.runner import resume_message

    layout = RunLayout(tmp_path)
    stages = {stage.name: stage for stage in pipeline()}

    def message(name: str) -> str:
        return resume_message(name, stages[name].outputs(layout), layout.checkpoints(name))

    examples = layout.checkpoints("distill-examples")
    examples.mkdir(parents=True)
    (examples / "chunk-0.npy").write_bytes(b"x")  # the example store exists before the first checkpoint
    assert "resuming" not in message("distill") and "starting its training over" in message("distill")
    (layout.checkpoints("distill") / "sub").mkdir(parents=True)  # a checkpoint being written: no state.json yet
    assert "resuming" not in message("distill")
    (layout.checkpoints("distill") / "state.json").write_text("{}")
    assert message("distill") == "resuming distill from its last checkpoint"
    assert "resuming" not in message("transfer") and "starting it over" in message("transfer")
    shard = layout.transfer / "00-generate" / "shard-00000.parquet"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"x")
    assert message("transfer") == "resuming transfer from what its last attempt saved"
