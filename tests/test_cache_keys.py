"""Cache granularity: each stage's key holds the config fields that change its output and nothing else, so a
change reruns exactly the stages it can affect (checked on `Run.keys()`, then end to end on a file-only run)."""

import json

import pytest
import yaml
from conftest import make_tiny_config
from typer.testing import CliRunner

from gendistill import Run
from gendistill.cli import app
from gendistill.config import build_config
from gendistill.sections import key_payload

STAGES = ["data", "teacher", "generator", "transfer", "label", "distill", "rounds", "baseline", "evaluate"]


@pytest.fixture()
def base(task_dir, tiny_teacher_dir):
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"].append({"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 20})
    return config


def rerun_by(base, tmp_path, *overrides):
    """The stages whose key differs between `base` and `base` with the overrides."""
    before = Run(build_config(base), tmp_path / "a").keys()
    after = Run(build_config(base, list(overrides)), tmp_path / "b").keys()
    assert list(before) == STAGES
    return {stage for stage in STAGES if before[stage]["key"] != after[stage]["key"]}


DOWNSTREAM_OF_TRANSFER = {"transfer", "label", "distill", "evaluate"}


@pytest.mark.parametrize(
    "override",
    ["transfer.sources.0.top_p=0.5", "transfer.sources.0.temperature=0.7", "transfer.sources.0.max_new_tokens=9"],
)
def test_a_sampling_knob_reruns_only_the_transfer_stage_and_after(base, tmp_path, override):
    assert rerun_by(base, tmp_path, override) == DOWNSTREAM_OF_TRANSFER


@pytest.mark.parametrize(
    "override",
    [
        "teacher.label_batch_size=8",
        "evaluate.batch_size=8",
        "evaluate.threads=1",
        "evaluate.speed_examples=5",
        "evaluate.speed_passes=2",
    ],
)
def test_an_inference_batch_size_or_thread_count_reruns_nothing(base, tmp_path, override):
    assert rerun_by(base, tmp_path, override) == set()


@pytest.mark.parametrize("override", ["transfer.sources.0.min_yield=0", "transfer.sources.1.min_yield=0.5"])
def test_min_yield_reruns_nothing_and_stays_out_of_every_key(base, tmp_path, override):
    """min_yield decides whether a source finishes (it stops with an error), never what a finished one wrote: a
    knob, so the keys of configs written before it existed are unchanged."""
    assert rerun_by(base, tmp_path, override) == set()
    assert all("min_yield" not in source for source in key_payload(build_config(base).transfer)["sources"])


def test_a_teacher_learning_rate_reruns_the_teacher_and_after_but_not_the_generator(base, tmp_path):
    assert rerun_by(base, tmp_path, "teacher.learning_rate=0.002") == {
        "teacher",
        "label",
        "distill",
        "baseline",
        "evaluate",
    }


@pytest.mark.parametrize("override", ["student.hidden_dim=24", "student.loss=mse", "student.epochs=3"])
def test_a_student_setting_reruns_distill_baseline_and_evaluate_only(base, tmp_path, override):
    assert rerun_by(base, tmp_path, override) == {"distill", "baseline", "evaluate"}


def test_a_generator_training_setting_reruns_the_generator_not_the_teacher(base, tmp_path):
    assert rerun_by(base, tmp_path, "generator.epochs=3") == {"generator", *DOWNSTREAM_OF_TRANSFER}


def test_a_file_source_change_never_reruns_generator_or_teacher(base, tmp_path, task_dir):
    assert rerun_by(base, tmp_path, "transfer.sources.1.n=10") == DOWNSTREAM_OF_TRANSFER
    edited = tmp_path / "unlabeled.jsonl"
    edited.write_text((task_dir / "unlabeled.jsonl").read_text() + '{"text": "one more text about rain"}\n')
    assert rerun_by(base, tmp_path, f"transfer.sources.1.path={edited}") == DOWNSTREAM_OF_TRANSFER


def test_the_generator_does_not_apply_without_a_generate_source(base, tmp_path):
    base["transfer"]["sources"] = base["transfer"]["sources"][1:]
    keys = Run(build_config(base), tmp_path / "a").keys()
    assert keys["generator"]["applies"] is False
    assert rerun_by(base, tmp_path, "generator.epochs=9") == set()


runner = CliRunner()


def starts(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {name: record.get("started_at") for name, record in manifest["stages"].items()}


def test_file_only_run_skips_the_generator_and_keeps_the_baseline_when_its_budget_is_unchanged(
    task_dir, tiny_teacher_dir, tmp_path
):
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"] = [{"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 25}]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    first = runner.invoke(app, ["run", str(path), "--run-dir", str(tmp_path / "run")])
    assert first.exit_code == 0, first.output
    assert "generator" not in first.output  # not run, not logged
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["stages"]["generator"] == {"status": "skipped", "seconds": None}
    assert not (tmp_path / "run" / "generator").exists()
    before = starts(tmp_path / "run")
    # 30 labeled + 25 or 26 transfer texts at batch 16: the same step budget, so the baseline is kept
    again = runner.invoke(
        app,
        [
            "run",
            str(path),
            "--run-dir",
            str(tmp_path / "run"),
            "--set",
            "transfer.sources.0.n=26",
            "--force",
            "changed",
        ],
    )
    assert again.exit_code == 0, again.output
    after = starts(tmp_path / "run")
    assert {stage for stage in before if before[stage] != after[stage]} == {"transfer", "label", "distill", "evaluate"}
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["stages"]["baseline"]["status"] == "reused" and report["stages"]["teacher"]["status"] == "reused"
    assert report["stages"]["distill"]["status"] == "ran" and report["transfer_set"]["kept"] == 26
    md = (tmp_path / "run" / "report.md").read_text()
    assert "| baseline | reused |" in md and "| evaluate | ran |" in md and "| generator | skipped | – |" in md


def test_a_field_added_later_stays_out_of_the_key_at_its_default_and_enters_it_when_set(base, tmp_path):
    """Upgrading gendistill must not rerun a run dir's stages because a section gained an option (data.multi_label
    and its forms came after runs were made); setting the option is a change like any other."""
    from gendistill.sections import key_payload

    payload = key_payload(build_config(base).data)
    assert not {"multi_label", "label_delimiter", "label_columns"} & set(payload)
    assert "per_class" in payload  # a field that was always there stays in, at its default too
    assert "data" in rerun_by(base, tmp_path, "data.multi_label=false")


def test_a_target_accuracy_reruns_only_evaluate_and_its_default_keeps_older_keys(base, tmp_path):
    """evaluate.target_accuracy decides the threshold stored with the students: a change reruns evaluate alone;
    at its default it is in no key, so run dirs made before it existed keep every key."""
    assert rerun_by(base, tmp_path, "evaluate.target_accuracy=0.9") == {"evaluate"}
    assert rerun_by(base, tmp_path, "evaluate.target_accuracy=0.95") == set()
    assert "target_accuracy" not in key_payload(build_config(base).evaluate)
    assert Run(build_config(base), tmp_path / "a").keys()["evaluate"]["fields"] is None  # as before the field


def test_an_accuracy_guarantee_reruns_only_evaluate_and_its_default_keeps_older_keys(base, tmp_path):
    assert rerun_by(base, tmp_path, "evaluate.accuracy_guarantee=0.9") == {"evaluate"}
    assert rerun_by(base, tmp_path, "evaluate.accuracy_guarantee=null") == set()
    assert "accuracy_guarantee" not in key_payload(build_config(base).evaluate)
