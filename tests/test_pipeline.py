"""The CLI end to end on tiny models: outputs, report, resume and skip-if-done, stage commands, predict."""

import json

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import make_tiny_config
from typer.testing import CliRunner

import gendistill
from gendistill.cli import app
from gendistill.config import build_config

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def write_config(path, config):
    path.write_text(yaml.safe_dump(config))
    return path


def stage_starts(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    # a stage that does not apply (rounds off, no baseline) is recorded as skipped, with no start
    return {
        name: record.get("started_at", record["finished_at"]) + str(record.get("seconds"))
        for name, record in manifest["stages"].items()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory, task_dir, tiny_teacher_dir):
    """One full run of the CLI shared by the tests below (they only read it or copy it)."""
    root = tmp_path_factory.mktemp("run")
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config_path = write_config(root / "tiny.yaml", config)
    result = invoke("run", config_path, "--run-dir", root / "out")
    assert result.exit_code == 0, result.output
    return root, config_path, root / "out", result.output


def test_run_writes_every_output(finished):
    _, _, run_dir, output = finished
    assert "report:" in output
    for name in (
        "config.yaml",
        "manifest.json",
        "report.json",
        "report.md",
        "teacher/model.safetensors",
        "student/model.safetensors",
        "student/tokenizer.json",
        "baseline_student/model.safetensors",
        "generator/model.safetensors",
        "labels/train.parquet",
        "data/train.parquet",
    ):
        assert (run_dir / name).exists(), name
    shards = sorted((run_dir / "transfer" / "00-generate").glob("shard-*.parquet"))
    assert len(shards) >= 3  # written in shards while generating
    assert sum(pq.read_table(s).num_rows for s in shards) == 40
    assert not list(run_dir.rglob("*.bin")) and not list(run_dir.rglob("*.pt"))


def test_report_has_the_promised_fields(finished):
    _, _, run_dir, _ = finished
    report = json.loads((run_dir / "report.json").read_text())
    for model in ("teacher", "student", "baseline_student"):
        for field in ("accuracy", "macro_f1", "params", "size_bytes", "examples_per_s"):
            assert isinstance(report[model][field], (int, float)), (model, field)
        assert 0 <= report[model]["accuracy"] <= 1
    source = report["transfer_set"]["sources"][0]
    assert source["n"] == 40 and source["kept"] == 40 and source["generated"] >= 40
    assert set(source["drops"]) == {"empty", "too_short", "too_long", "duplicate", "training_copy"}
    assert source["generated"] == source["kept"] + sum(source["drops"].values()) + source["surplus"]
    stages = ("data", "teacher", "generator", "transfer", "label", "distill", "rounds", "baseline", "evaluate")
    assert list(report["stages"]) == list(stages)
    assert report["stages"].pop("rounds") == {"status": "skipped", "seconds": None}  # rounds.count is 0
    assert all(row["status"] == "ran" and row["seconds"] >= 0 for row in report["stages"].values())
    assert "| evaluate | ran |" in (run_dir / "report.md").read_text()
    assert report["student"]["params"] < report["teacher"]["params"]
    assert "| student |" in (run_dir / "report.md").read_text()


def test_manifest_records_each_stage(finished):
    _, _, run_dir, _ = finished
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["format"] == 2
    for stage in ("data", "teacher", "generator", "transfer", "label", "distill", "baseline", "evaluate"):
        record = manifest["stages"][stage]
        assert record["status"] == "done"
        assert record["config_hash"] and record["input_hashes"] is not None and record["seconds"] >= 0
        assert record["versions"]["torch"]
    assert any(k.endswith("train.jsonl") for k in manifest["stages"]["data"]["input_hashes"])


def test_second_run_skips_everything_and_changed_student_reruns_only_distill_and_evaluate(finished, tmp_path):
    import shutil

    _, config_path, run_dir, _ = finished
    copy = tmp_path / "out"
    shutil.copytree(run_dir, copy)
    before = stage_starts(copy)
    again = invoke("run", config_path, "--run-dir", copy)
    assert again.exit_code == 0, again.output
    assert stage_starts(copy) == before
    assert again.output.count("(done, unchanged)") == 8

    refused = invoke("run", config_path, "--run-dir", copy, "--set", "student.hidden_dim=24")
    assert refused.exit_code == 2
    assert "different config" in refused.output and "student.hidden_dim" in refused.output
    assert "Traceback" not in refused.output

    changed = invoke("run", config_path, "--run-dir", copy, "--set", "student.hidden_dim=24", "--force", "changed")
    assert changed.exit_code == 0, changed.output
    after = stage_starts(copy)
    rerun = {stage for stage in before if before[stage] != after[stage]}
    assert rerun == {"distill", "baseline", "evaluate"}
    report = json.loads((copy / "report.json").read_text())
    assert report["student"]["params"] != json.loads((run_dir / "report.json").read_text())["student"]["params"]


def test_stage_command_reruns_one_stage_and_marks_later_ones_stale(finished, tmp_path):
    import shutil

    _, config_path, run_dir, _ = finished
    copy = tmp_path / "out"
    shutil.copytree(run_dir, copy)
    before = stage_starts(copy)
    result = invoke("distill", copy)
    assert result.exit_code == 0, result.output
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["stages"]["evaluate"]["status"] == "stale"
    assert manifest["stages"]["baseline"]["status"] == "done"  # it does not read the distilled student
    rerun = invoke("run", copy / "config.yaml", "--run-dir", copy)
    assert rerun.exit_code == 0, rerun.output
    after = stage_starts(copy)
    assert {s for s in before if before[s] != after[s]} == {"distill", "evaluate"}


def test_predict_prints_labels_and_probabilities(finished, task_dir):
    _, _, run_dir, _ = finished
    result = invoke("predict", run_dir, "the storm and rain today", "a goal for the team")
    assert result.exit_code == 0, result.output
    labels = result.output.strip().splitlines()
    assert len(labels) == 2 and all(label in {"cooking", "sports", "weather"} for label in labels)
    as_json = invoke("predict", run_dir / "student", "--json", "the oven and flour")
    row = json.loads(as_json.output.strip())
    assert abs(sum(row["probabilities"].values()) - 1) < 1e-5 and row["label"] in row["probabilities"]


def test_predict_without_texts_is_a_clear_error(finished):
    _, _, run_dir, _ = finished
    result = invoke("predict", run_dir)
    assert result.exit_code == 2 and "no texts" in result.output


def test_api_with_file_source_conditional_pretrained_generator_and_cnn(
    task_dir, tiny_teacher_dir, tiny_gpt2_dir, tmp_path
):
    config = build_config(
        {
            "data": {"train": str(task_dir / "train.jsonl"), "test": str(task_dir / "test.jsonl"), "per_class": 10},
            "teacher": {"model": str(tiny_teacher_dir), "epochs": 1, "max_length": 32},
            "generator": {"model": str(tiny_gpt2_dir), "conditional": True, "epochs": 1, "max_length": 32},
            "transfer": {
                "sources": [
                    {"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 25},
                    {"type": "generate", "n": 10, "prompt": "first_word", "max_new_tokens": 8, "batch_size": 8},
                ],
                "shard_size": 8,
                "filters": {"min_words": 1},
            },
            "student": {"arch": "cnn", "init": "random", "embedding_dim": 8, "hidden_dim": 8, "epochs": 1},
            "evaluate": {"speed_examples": 16},
            "device": "cpu",
        }
    )
    report = gendistill.run(config, tmp_path / "api")
    sources = report.transfer_set.sources
    assert [s.type for s in sources] == ["file", "generate"]
    assert sources[0].kept == 25 and sources[1].kept <= 10
    assert report.train_examples == 30 and report.student.arch == "cnn"
    assert report.path == tmp_path / "api" / "report.json"
    student = gendistill.StudentClassifier.from_pretrained(tmp_path / "api" / "student")
    assert student.predict(["rain and wind"])[0] in {"cooking", "sports", "weather"}


def test_predict_accepts_an_onnx_export(finished, tmp_path):
    _, _, run_dir, _ = finished
    exported = invoke("export", run_dir, "--format", "onnx", "--out", tmp_path / "onnx")
    assert exported.exit_code == 0, exported.output
    from_export = invoke("predict", tmp_path / "onnx", "the storm and rain today", "a goal for the team")
    from_torch = invoke("predict", run_dir, "the storm and rain today", "a goal for the team")
    assert from_export.exit_code == 0, from_export.output
    assert from_export.output == from_torch.output


def test_adopt_reuses_matching_stages_of_another_run(finished, tmp_path):
    _, config_path, run_dir, _ = finished
    config = gendistill.load_config(config_path, ["student.arch=bag"])
    other = gendistill.Run(config, tmp_path / "arm")
    adopted = other.adopt(run_dir, ("data", "teacher", "generator", "transfer", "label"))
    assert adopted == ["data", "teacher", "generator", "transfer", "label"]
    assert (tmp_path / "arm" / "teacher").is_symlink()
    report = other.run()
    assert report.student.arch == "bag"
    manifest = json.loads((tmp_path / "arm" / "manifest.json").read_text())
    assert manifest["stages"]["teacher"]["adopted_from"] == str(run_dir.resolve())
    assert (run_dir / "teacher" / "model.safetensors").exists()  # the source run is untouched
    # a stage whose config differs is not adopted
    changed = gendistill.Run(gendistill.load_config(config_path, ["teacher.epochs=1"]), tmp_path / "arm2")
    assert changed.adopt(run_dir, ("data", "teacher")) == ["data"]


def card_header(path) -> dict:
    """The YAML between a card's `---` lines, read with yaml.safe_load (which refuses Python object tags)."""
    text = path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_the_run_dirs_model_card_is_plain_yaml_with_the_metrics(finished):
    from huggingface_hub import ModelCard

    _, _, run_dir, _ = finished
    card_path = run_dir / "student" / "README.md"
    header = card_header(card_path)
    report = json.loads((run_dir / "report.json").read_text())
    results = header["model-index"][0]["results"]
    assert {m["type"]: m["value"] for r in results for m in r["metrics"]} == {
        "accuracy": report["student"]["accuracy"],
        "f1": report["student"]["macro_f1"],
    }
    assert header["gendistill"]["init"] == "teacher"
    card = ModelCard.load(card_path)
    assert card.data.eval_results and card.data.eval_results[0].metric_value is not None
    text = card_path.read_text()
    assert "Not evaluated" not in text and "python/" not in text
    assert "EmbeddingInit" not in text and "LossKind" not in text and "Enum" not in text
    assert "init `teacher`, loss `kl`" in text
    assert "train.jsonl" not in text  # the trainer's file names stay private
    assert "a generator LM wrote" in text  # this run's transfer source is `generate`
