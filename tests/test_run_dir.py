"""The run directory as a shared resource: one process at a time (an OS lock that a killed process releases),
a config that is saved only once its checks pass, and config changes judged by what they would rerun."""

import json
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from conftest import cli_env, make_tiny_config, write_jsonl
from typer.testing import CliRunner

from gendistill.cli import app
from gendistill.config import build_config
from gendistill.errors import DataError
from gendistill.pipeline.preflight import preflight

runner = CliRunner()


def cli_process(*args, kill_at=None):
    env = cli_env(kill_at)
    return subprocess.Popen(
        [sys.executable, "-m", "gendistill.cli", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture()
def config_path(tmp_path, task_dir, tiny_teacher_dir):
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"][0]["n"] = 120  # long enough to be caught running
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def transfer_rows(run_dir):
    import pyarrow.parquet as pq

    return sum(pq.read_table(p).num_rows for p in (run_dir / "transfer").glob("*/shard-*.parquet"))


def test_a_second_run_on_the_same_dir_is_refused_while_the_first_completes(config_path, tmp_path):
    run_dir = tmp_path / "run"
    first = cli_process("run", config_path, "--run-dir", run_dir)
    deadline = time.monotonic() + 120
    while not (run_dir / ".lock.json").exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = runner.invoke(app, ["run", str(config_path), "--run-dir", str(run_dir)])
    assert second.exit_code == 2
    assert f"is in use by another gendistill process (pid {first.pid}" in second.output
    assert "Traceback" not in second.output
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert transfer_rows(run_dir) == 120
    report = json.loads((run_dir / "report.json").read_text())
    assert report["transfer_set"]["kept"] == 120
    assert not (run_dir / ".lock.json").exists()


def test_a_lock_held_by_a_killed_process_never_blocks_the_rerun(config_path, tmp_path):
    run_dir = tmp_path / "run"
    killed = cli_process("run", config_path, "--run-dir", run_dir, kill_at="transfer.shard:2")
    killed.communicate(timeout=300)
    assert killed.returncode == -9
    assert json.loads((run_dir / ".lock.json").read_text())["pid"] == killed.pid  # left behind by SIGKILL
    rerun = runner.invoke(app, ["run", str(config_path), "--run-dir", str(run_dir)])
    assert rerun.exit_code == 0, rerun.output
    assert transfer_rows(run_dir) == 120


def test_a_run_refused_by_its_checks_saves_no_config_and_the_corrected_command_runs(
    task_dir, tiny_teacher_dir, tmp_path
):
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"] = [{"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 20}]
    config["student"].update(baseline=False)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    refused = runner.invoke(app, ["run", str(path), "--run-dir", str(run_dir), "--set", "data.per_class=1000"])
    assert refused.exit_code == 2 and "per_class=1000" in refused.output
    assert not (run_dir / "config.yaml").exists()
    fixed = runner.invoke(app, ["run", str(path), "--run-dir", str(run_dir), "--set", "data.per_class=8"])
    assert fixed.exit_code == 0, fixed.output
    # a run dir whose saved config differs but where no stage finished (made by an older version that saved
    # config.yaml first) accepts the new config too
    (run_dir / "manifest.json").write_text(json.dumps({"format": 2, "stages": {}}))
    (run_dir / "config.yaml").write_text("data: {train: elsewhere.jsonl}\nteacher: {model: m}\n")
    again = runner.invoke(app, ["run", str(path), "--run-dir", str(run_dir), "--set", "data.per_class=8"])
    assert again.exit_code == 0, again.output


def test_a_knob_change_is_accepted_without_force_and_reruns_nothing(task_dir, tiny_teacher_dir, tmp_path):
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"] = [{"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 20}]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    assert runner.invoke(app, ["run", str(path), "--run-dir", str(run_dir)]).exit_code == 0
    before = (run_dir / "manifest.json").read_text()
    knob = runner.invoke(app, ["run", str(path), "--run-dir", str(run_dir), "--set", "teacher.label_batch_size=4"])
    assert knob.exit_code == 0, knob.output
    assert "affects no finished stage (teacher.label_batch_size)" in knob.output
    assert knob.output.count("(done, unchanged)") == 7  # every stage that applies; the generator does not
    assert json.loads((run_dir / "manifest.json").read_text())["stages"] == json.loads(before)["stages"]
    assert "label_batch_size: 4" in (run_dir / "config.yaml").read_text()


def test_an_old_format_run_dir_is_refused_with_one_line(config_path, tmp_path):
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"stages": {"generate": {"status": "done"}}}))
    result = runner.invoke(app, ["run", str(config_path), "--run-dir", str(run_dir)])
    assert result.exit_code == 2 and "made by an older gendistill (run-directory format 1" in result.output


@pytest.mark.parametrize("kind", ["file", "under_file", "loop"])
def test_a_run_dir_that_cannot_be_a_directory_is_one_line(config_path, tmp_path, kind):
    if kind == "file":
        target = tmp_path / "f"
        target.write_text("x")
    elif kind == "under_file":
        (tmp_path / "f").write_text("x")
        target = tmp_path / "f" / "run"
    else:
        target = tmp_path / "loop"
        target.symlink_to(tmp_path / "loop")
    result = runner.invoke(app, ["run", str(config_path), "--run-dir", str(target)])
    assert result.exit_code == 2 and str(target) in result.output and "Traceback" not in result.output


def test_a_truncated_manifest_is_one_line(config_path, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text('{"format": 2, "stages": {"da')
    result = runner.invoke(app, ["run", str(config_path), "--run-dir", str(run_dir)])
    assert result.exit_code == 2 and "manifest.json: cannot be read" in result.output


def test_a_file_source_hint_names_its_own_key_and_it_inherits_the_data_column(task_dir, tiny_teacher_dir, tmp_path):
    rows = [{"body": json.loads(line)["text"]} for line in (task_dir / "unlabeled.jsonl").read_text().splitlines()]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"] = [{"type": "file", "path": str(pool)}]
    with pytest.raises(DataError, match=r"no text column 'text' \(columns found: body\); set transfer.sources\[0\]"):
        preflight(build_config(config), {"transfer"})
    config["transfer"]["sources"][0]["text_column"] = "body"
    preflight(build_config(config), {"transfer"})
    train = [
        {"body": r["text"], "label": r["label"]}
        for r in map(json.loads, (task_dir / "train.jsonl").read_text().splitlines())
    ]
    config["data"].update(train=str(write_jsonl(tmp_path / "train.jsonl", train)), test=None, text_column="body")
    config["transfer"]["sources"][0].pop("text_column")
    preflight(build_config(config), {"transfer"})  # the source reads data.text_column


def test_a_stage_command_for_a_stage_the_run_does_not_use(task_dir, tiny_teacher_dir, tmp_path):
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"] = [{"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 20}]
    config["student"]["baseline"] = False
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert runner.invoke(app, ["run", str(path), "--run-dir", str(tmp_path / "run")]).exit_code == 0
    for command in ("train-generator", "baseline"):
        result = runner.invoke(app, [command, str(tmp_path / "run")])
        assert result.exit_code == 2 and "is not part of this run" in result.output, result.output


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, task_dir, tiny_teacher_dir):
    """A whole run on tiny models (a file source in two label shards, no baseline), done once for this module; a
    test that damages it works on its own copy (`run_copy`)."""
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"] = [{"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 24}]
    config["student"]["baseline"] = False
    root = tmp_path_factory.mktemp("finished")
    path = root / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["run", str(path), "--run-dir", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.fixture()
def run_copy(finished_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished_run, target)
    config = target / "config.yaml"
    config.write_text(config.read_text().replace(str(finished_run), str(target)))
    return target


def one_line(result, *fragments):
    """Exit 2 and one error line (after any progress lines of the stage it stopped), without a traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("error: ") and result.output.count("error: ") == 1, result.output
    for fragment in fragments:
        assert fragment in message, (fragment, result.output)
    return message


def test_without_its_manifest_a_stage_command_names_a_command_that_exists(run_copy):
    (run_copy / "manifest.json").unlink()
    message = one_line(runner.invoke(app, ["distill", str(run_copy)]), "has not finished", "run it first")
    named = re.search(r"\(gendistill ([a-z-]+) ", message)
    assert named is not None, message
    assert runner.invoke(app, [named.group(1), "--help"]).exit_code == 0, f"no command {named.group(1)!r}: {message}"


def transfer_label_files(run_dir):
    return sorted((run_dir / "labels").glob("*/shard-*.parquet"))


def test_a_deleted_label_shard_stops_distill_with_one_line(run_copy):
    """The student trained on fewer texts and the run said done."""
    assert len(transfer_label_files(run_copy)) >= 2
    gone = transfer_label_files(run_copy)[-1]
    gone.unlink()
    one_line(runner.invoke(app, ["distill", str(run_copy)]), f"{gone} is missing", f"gendistill label {run_copy}")
    assert runner.invoke(app, ["label", str(run_copy)]).exit_code == 0  # the command the message names mends it
    assert gone.exists() and runner.invoke(app, ["distill", str(run_copy)]).exit_code == 0


@pytest.mark.parametrize("which", ["transfer", "train"])
def test_nan_logits_in_a_label_file_name_the_file_not_the_learning_rate(run_copy, which):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = transfer_label_files(run_copy)[0] if which == "transfer" else run_copy / "labels" / "train.parquet"
    # an index of row counts only (a run dir labeled before checksums): what catches the NaN is the logits check,
    # not the file's sha256
    index_path = run_copy / "labels" / "shards.json"
    index = json.loads(index_path.read_text())
    index_path.write_text(json.dumps({name: record["rows"] for name, record in index.items()}))
    table = pq.read_table(path)
    logits = table.column("logits").to_pylist()
    logits[1] = [float("nan")] * len(logits[1])
    column = table.schema.get_field_index("logits")
    pq.write_table(table.set_column(column, "logits", pa.array(logits, pa.list_(pa.float32()))), path)
    message = one_line(runner.invoke(app, ["distill", str(run_copy)]), str(path), "NaN or infinite")
    assert "learning rate" not in message


def test_a_deleted_test_split_is_a_damaged_run_dir_not_no_test_set(run_copy):
    """It was read as "no test set": the report had no accuracy and the command exited 0."""
    test_split = run_copy / "data" / "test.parquet"
    test_split.unlink()
    message = one_line(runner.invoke(app, ["evaluate", str(run_copy)]), f"{test_split} is missing", "test rows")
    assert "damaged" in message and "--force data" in message
    command = message.split("`")[1].split()
    assert command[0] == "gendistill"
    assert runner.invoke(app, command[1:]).exit_code == 0  # the command the message names mends it
    assert test_split.exists()


def test_a_truncated_transfer_shard_stops_label_with_one_line(run_copy):
    """It was a pyarrow traceback; the message names the shard and the command that rebuilds the set."""
    shard = sorted((run_copy / "transfer").glob("*/shard-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    message = one_line(runner.invoke(app, ["label", str(run_copy)]), str(shard), "--force transfer")
    command = message.split("`")[1].split()
    assert command[0] == "gendistill"
    assert runner.invoke(app, command[1:]).exit_code == 0  # the command the message names mends it
    assert len(transfer_label_files(run_copy)) >= 2


@pytest.mark.parametrize("damage", ["truncated", "rewritten"])
def test_a_damaged_label_shard_stops_distill_with_one_line(run_copy, damage):
    """Truncated: a pyarrow traceback. Rewritten with other (finite) logits and the same rows: only its sha256 in
    labels/shards.json tells, and the student trained on them silently."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = transfer_label_files(run_copy)[0]
    if damage == "truncated":
        shard.write_bytes(shard.read_bytes()[:100])
    else:
        table = pq.read_table(shard)
        logits = [[value + 1.0 for value in row] for row in table.column("logits").to_pylist()]
        column = table.schema.get_field_index("logits")
        pq.write_table(table.set_column(column, "logits", pa.array(logits, pa.list_(pa.float32()))), shard)
    one_line(runner.invoke(app, ["distill", str(run_copy)]), str(shard), f"gendistill label {run_copy}")
    assert runner.invoke(app, ["label", str(run_copy)]).exit_code == 0
    assert runner.invoke(app, ["distill", str(run_copy)]).exit_code == 0


def test_a_damaged_label_file_met_by_a_resumed_label_stage_is_labeled_again(run_copy):
    """The label stage resumes (as after a kill) and finds a truncated label file: one warning naming it, the
    file is labeled again, and the run finishes."""
    import pyarrow.parquet as pq

    manifest_path = run_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["stages"]["label"]["status"] = "running"
    manifest_path.write_text(json.dumps(manifest))
    shard = transfer_label_files(run_copy)[0]
    rows = pq.read_table(shard).to_pylist()
    shard.write_bytes(shard.read_bytes()[:100])
    result = runner.invoke(app, ["run", str(run_copy / "config.yaml"), "--run-dir", str(run_copy)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.output.splitlines() if "is damaged" in line or "not readable" in line]
    assert len(warnings) == 1 and str(shard) in " ".join(result.output.split()), result.output
    assert pq.read_table(shard).to_pylist() == rows
