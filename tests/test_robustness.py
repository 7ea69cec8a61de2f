"""Damaged files, impossible settings and a full disk: each is one line on stderr and exit code 2, never a
traceback (issue 14, item 7), and pickle-format weights are refused unless the user opts in (item 8)."""

import errno
import shutil

import pytest
import torch
import yaml
from conftest import LABELS, train_tiny_student
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch
from typer.testing import CliRunner

from gendistill.cli import app

runner = CliRunner()


def base_config(task_dir, teacher_dir):
    return {
        "data": {"train": str(task_dir / "train.jsonl"), "test": str(task_dir / "test.jsonl")},
        "teacher": {"model": str(teacher_dir), "epochs": 1, "max_length": 32},
        "transfer": {"sources": [{"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 10}]},
        "student": {"embedding_dim": 8, "hidden_dim": 8, "epochs": 1, "init": "random"},
        "device": "cpu",
    }


def run(tmp_path, config, *extra):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return runner.invoke(app, ["run", str(path), "--run-dir", str(tmp_path / "run"), *extra])


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in " ".join(result.output.split()), (fragment, result.output)


@pytest.fixture()
def teacher_copy(tmp_path, tiny_teacher_dir):
    target = tmp_path / "teacher_copy"
    shutil.copytree(tiny_teacher_dir, target)
    return target


def test_a_truncated_teacher_weights_file(tmp_path, task_dir, teacher_copy):
    weights = teacher_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    one_line_error(
        run(tmp_path, base_config(task_dir, teacher_copy)),
        "the folder exists but cannot be loaded",
        "deserializing header",
    )


def test_pickle_only_teacher_weights_are_refused_unless_allowed(tmp_path, task_dir, teacher_copy):
    from transformers import BertModel

    model = BertModel.from_pretrained(teacher_copy)
    (teacher_copy / "model.safetensors").unlink()
    torch.save(model.state_dict(), teacher_copy / "pytorch_model.bin")  # the pickle format
    one_line_error(run(tmp_path, base_config(task_dir, teacher_copy)), "only pickle weights", "allow_pickle_weights")


def test_a_max_length_beyond_the_teachers_positions(tmp_path, task_dir, tiny_teacher_dir):
    result = run(tmp_path, base_config(task_dir, tiny_teacher_dir), "--set", "teacher.max_length=1024")
    one_line_error(result, "teacher.max_length=1024", "only 128 positions")


def test_a_missing_local_teacher_path_is_not_blamed_on_the_hub(tmp_path, task_dir):
    result = run(tmp_path, base_config(task_dir, tmp_path / "nowhere" / "teacher"))
    one_line_error(result, "no such folder")
    assert "Hub" not in result.output


def test_an_absurd_student_size_is_a_config_error(tmp_path, task_dir, tiny_teacher_dir):
    result = run(tmp_path, base_config(task_dir, tiny_teacher_dir), "--set", "student.hidden_dim=100000000")
    one_line_error(result, "bad value for 'student.hidden_dim'", "less than or equal to 8192")


def test_a_full_disk_names_the_file_and_the_free_space(tmp_path, task_dir, tiny_teacher_dir, monkeypatch):
    import gendistill.data.stored as data_stage

    def no_space(path, table):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(data_stage, "write_parquet", no_space)
    result = run(tmp_path, base_config(task_dir, tiny_teacher_dir))
    one_line_error(result, "the disk is full while writing", "train.parquet", "MB free", "finished work is kept")


@pytest.fixture()
def student_dir(tmp_path, tiny_teacher_dir):
    student, _ = train_tiny_student("bag", "random", tiny_teacher_dir, epochs=1)
    student.save_pretrained(tmp_path / "student")
    return tmp_path / "student"


def test_damaged_student_weights(student_dir):
    (student_dir / "model.safetensors").write_bytes(b"\x00" * 64)
    one_line_error(runner.invoke(app, ["predict", str(student_dir), "a goal"]), "a student file is damaged")


def test_a_student_with_nan_weights_is_refused_not_answered(student_dir):
    """A diverged student must not answer a label with NaN probabilities, nor be evaluated at chance."""
    weights = load_torch(str(student_dir / "model.safetensors"))
    name = next(key for key, value in weights.items() if value.is_floating_point())
    weights[name][0] = float("nan")
    save_torch(weights, str(student_dir / "model.safetensors"))
    for command in (["predict", str(student_dir), "a goal"], ["export", str(student_dir), "--out", "x"]):
        one_line_error(runner.invoke(app, command), "NaN or infinite", name, "retrain the student")


def test_an_id_map_outside_the_embedding_table_is_refused(tmp_path, tiny_teacher_dir):
    """An out-of-range id map used to pass export and then fail every prediction of that token with a 500."""
    student, _ = train_tiny_student("bag", "teacher", tiny_teacher_dir, epochs=1)
    folder = tmp_path / "student"
    student.save_pretrained(folder)
    id_map = load_numpy(str(folder / "id_map.safetensors"))["id_map"]
    id_map[-1] = student.spec.vocab_size + 5
    save_numpy({"id_map": id_map}, str(folder / "id_map.safetensors"))
    for command in (["predict", str(folder), "a goal"], ["export", str(folder), "--out", str(tmp_path / "x")]):
        one_line_error(runner.invoke(app, command), "id_map.safetensors", "outside the", "embedding table")


def test_a_student_whose_labels_do_not_match_its_network(student_dir):
    import json

    config = json.loads((student_dir / "config.json").read_text())
    config["label_names"] = [*LABELS, "extra"]
    (student_dir / "config.json").write_text(json.dumps(config))
    for command in (["predict", str(student_dir), "a goal"], ["export", str(student_dir), "--out", "x"]):
        one_line_error(runner.invoke(app, command), "names 4 labels but the network has 3 outputs")


def test_serve_refuses_a_port_out_of_range(tmp_path):
    result = runner.invoke(app, ["serve", str(tmp_path), "--port", "70000"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "65535" in result.output


def test_export_refuses_to_replace_the_current_folder(student_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    one_line_error(runner.invoke(app, ["export", str(student_dir), "--out", "."]), "is not an ONNX export")
    assert (tmp_path / "c.yaml").exists() or student_dir.exists()


def test_a_diverging_loss_stops_training_with_the_step():
    from gendistill.runtime import make_accelerator
    from gendistill.training.loop import TrainingDiverged, fit

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    losses = iter([1.0, 0.5, float("nan")])

    def loss_fn(m, batch):
        return m(batch["x"]).sum() * 0 + next(losses)

    with pytest.raises(TrainingDiverged, match=r"test loop: the loss became nan at step 3"):
        fit(
            accelerator=make_accelerator("cpu", "no", 0),
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            examples=[torch.zeros(2)] * 8,
            batch_size=2,
            collate=lambda rows: {"x": torch.stack(rows)},
            loss_fn=loss_fn,
            steps=4,
            seed=0,
            description="test loop",
        )


@pytest.mark.parametrize("damage", ["metadata_list", "labels_mismatch"])
def test_a_damaged_export_folder(student_dir, tmp_path, damage):
    import json

    result = runner.invoke(app, ["export", str(student_dir), "--out", str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.output
    if damage == "metadata_list":
        (tmp_path / "onnx" / "metadata.json").write_text("[1, 2]")
        expected = "metadata.json: expected a JSON object"
    else:
        (tmp_path / "onnx" / "labels.json").write_text(json.dumps([*LABELS, "extra"]))
        expected = "4 label names for a model with 3 outputs"
    one_line_error(runner.invoke(app, ["predict", str(tmp_path / "onnx"), "a goal"]), expected)


def pickle_only_copy(source, target, model_class):
    """A copy of a model folder whose weights are a pytorch_model.bin (a pickle) and no safetensors."""
    shutil.copytree(source, target)
    model = model_class.from_pretrained(target)
    for weights in target.glob("*.safetensors"):
        weights.unlink()
    torch.save(model.state_dict(), target / "pytorch_model.bin")
    return target


def test_a_pickle_only_student_init_from_encoder_is_refused_unless_allowed(tmp_path, task_dir, tiny_teacher_dir):
    """It was loaded (unpickled) without any opt-in: only the teacher's folder was checked."""
    from transformers import BertModel

    encoder = pickle_only_copy(tiny_teacher_dir, tmp_path / "encoder", BertModel)
    config = base_config(task_dir, tiny_teacher_dir)
    config["student"].update(init="teacher", init_from=str(encoder))
    one_line_error(run(tmp_path, config), "student model", "only pickle weights", "student.allow_pickle_weights")
    allowed = run(tmp_path, config, "--set", "student.allow_pickle_weights=true")
    assert allowed.exit_code == 0, allowed.output


def test_a_pickle_only_generator_model_is_refused_unless_allowed(tmp_path, task_dir, tiny_teacher_dir, tiny_gpt2_dir):
    from transformers import GPT2LMHeadModel

    generator = pickle_only_copy(tiny_gpt2_dir, tmp_path / "generator", GPT2LMHeadModel)
    config = base_config(task_dir, tiny_teacher_dir)
    config["generator"] = {"model": str(generator), "epochs": 1, "max_length": 32}
    config["transfer"]["sources"] = [{"type": "generate", "n": 8, "max_new_tokens": 8}]
    one_line_error(run(tmp_path, config), "generator model", "only pickle weights", "generator.allow_pickle_weights")
    allowed = run(tmp_path, config, "--set", "generator.allow_pickle_weights=true")
    assert allowed.exit_code == 0, allowed.output


def test_a_teacher_folder_without_its_vocabulary_files_is_refused(tmp_path, task_dir, teacher_copy):
    """transformers built a tokenizer of the 5 special tokens and the teacher trained at chance."""
    for name in ("vocab.txt", "tokenizer.json"):
        (teacher_copy / name).unlink()
    one_line_error(run(tmp_path, base_config(task_dir, teacher_copy)), "its tokenizer has 5 tokens", "vocab_size")


# ---- issue 25, item I: one line instead of a traceback ---------------------------------------------------------
def rewrite_config(folder, **changes):
    import json

    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_a_teacher_config_whose_hidden_size_disagrees_with_its_weights(tmp_path, task_dir, teacher_copy):
    rewrite_config(teacher_copy, hidden_size=48, intermediate_size=96)
    one_line_error(
        run(tmp_path, base_config(task_dir, teacher_copy)),
        str(teacher_copy),
        "embeddings.word_embeddings.weight",
        "config.json",
        "disagree",
    )


def test_teacher_weights_without_position_embeddings(tmp_path, task_dir, teacher_copy):
    weights = load_torch(str(teacher_copy / "model.safetensors"))
    name = next(key for key in weights if "position_embeddings" in key)
    del weights[name]
    save_torch(weights, str(teacher_copy / "model.safetensors"))
    one_line_error(run(tmp_path, base_config(task_dir, teacher_copy)), str(teacher_copy), name, "missing")


def test_a_teacher_vocab_size_smaller_than_its_tokenizer(tmp_path, task_dir, teacher_copy):
    """Config and weights agree on 50 rows, but the tokenizer makes ids up to ~200: indexing would fail mid-run."""
    weights = load_torch(str(teacher_copy / "model.safetensors"))
    name = next(key for key in weights if "word_embeddings" in key)
    weights[name] = weights[name][:50].clone()
    save_torch(weights, str(teacher_copy / "model.safetensors"))
    rewrite_config(teacher_copy, vocab_size=50)
    one_line_error(run(tmp_path, base_config(task_dir, teacher_copy)), str(teacher_copy), "vocab_size is 50")


def test_a_student_without_its_id_map(tmp_path, tiny_teacher_dir):
    student, _ = train_tiny_student("bag", "teacher", tiny_teacher_dir, epochs=1)
    folder = tmp_path / "student"
    student.save_pretrained(folder)
    (folder / "id_map.safetensors").unlink()
    for command in (["predict", str(folder), "a goal"], ["export", str(folder), "--out", str(tmp_path / "x")]):
        one_line_error(runner.invoke(app, command), str(folder / "id_map.safetensors"), "missing")


def test_a_damaged_pickle_with_the_opt_in_names_the_file(tmp_path, task_dir, teacher_copy):
    (teacher_copy / "model.safetensors").unlink()
    (teacher_copy / "pytorch_model.bin").write_bytes(b"\x80\x04not a pickle at all")
    config = base_config(task_dir, teacher_copy)
    config["teacher"]["allow_pickle_weights"] = True
    one_line_error(run(tmp_path, config), str(teacher_copy / "pytorch_model.bin"))


def test_a_full_disk_without_a_file_name_names_the_run_directory(tmp_path, task_dir, tiny_teacher_dir, monkeypatch):
    """The error of a library that writes for us may carry no file name: the free space must be that of the run
    directory's file system, not that of wherever the command was started."""
    import shutil as shutil_module

    import gendistill.data.stored as data_stage

    def no_space(path, table):
        raise OSError(errno.ENOSPC, "No space left on device")

    asked = []
    real_usage = shutil_module.disk_usage
    monkeypatch.setattr(data_stage, "write_parquet", no_space)
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: asked.append(path) or real_usage(path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run(tmp_path, base_config(task_dir, tiny_teacher_dir))
    one_line_error(result, "the disk is full while writing into the run directory", str(tmp_path / "run"), "MB free")
    assert asked and all(str(path).startswith(str(tmp_path / "run")) for path in asked), asked
