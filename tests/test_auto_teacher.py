"""The `auto` teacher: cross-validation on the labeled texts chooses between the candidate kinds (here stand-ins whose
errors are known, so the choice is known), `choice.json` records why, the budget cuts the CV short, the preflight
refuses too few texts per class; and a whole pipeline on tiny real candidates reports the choice."""

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LABELS, labeled, make_rows, make_tiny_config, write_jsonl

from gendistill import Run
from gendistill.config import build_config
from gendistill.data.task import LabeledSet
from gendistill.errors import ConfigError, ModelLoadError
from gendistill.runtime import make_accelerator
from gendistill.teachers import FitContext, TeacherConfig
from gendistill.teachers.auto import AutoTeacher, softmax
from gendistill.teachers.hf_encoder import HFEncoderTeacher
from gendistill.teachers.setfit import SetFitTeacher

TEXTS, GOLD = labeled(20, 0)
INDEX = {text: i for i, text in enumerate(TEXTS)}


class StandIn(TeacherConfig):
    """A candidate whose predictions are known: right on every labeled text except those whose index is
    `offset` modulo `wrong_every`, with `confidence` in its answer (`wrong_confidence` in a wrong one); fitting takes
    `sleep` seconds and records what it was fitted on."""

    kind: str = "stand_in"
    wrong_every: int = 0
    offset: int = 0
    confidence: float = 0.9
    wrong_confidence: float | None = None
    sleep: float = 0.0

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        time.sleep(self.sleep)
        ctx.out_dir.mkdir(parents=True)
        (ctx.out_dir / "fitted.json").write_text(json.dumps({"texts": len(ctx.train)}))
        return {"steps": 1, "final_loss": 0.5}

    def load(self, directory: Path, device: Any) -> "StandInLabeler":
        return StandInLabeler(self, json.loads((directory / "fitted.json").read_text())["texts"])


class StandInLabeler:
    def __init__(self, config: StandIn, fitted_on: int):
        self.config, self.fitted_on = config, fitted_on

    def logits(self, texts: list[str], batch_size: int) -> np.ndarray:
        c = self.config
        probabilities = np.zeros((len(texts), len(LABELS)))
        for row, text in enumerate(texts):
            i = INDEX[text]
            wrong = c.wrong_every and i % c.wrong_every == c.offset
            confidence = c.wrong_confidence or c.confidence if wrong else c.confidence
            probabilities[row] = (1 - confidence) / (len(LABELS) - 1)
            probabilities[row, (GOLD[i] + 1) % len(LABELS) if wrong else GOLD[i]] = confidence
        return np.log(probabilities).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"params": 10, "size_bytes": 40}


def fit_auto(tmp_path, monkeypatch, stand_ins: dict[str, StandIn], **fields) -> tuple[AutoTeacher, dict, Path]:
    """(config, stats, teacher folder): the auto teacher fitted on the fixture's 20 texts per class with the
    candidates replaced by stand-ins."""
    config = build_config({"data": {"train": "unused.jsonl"}, "teacher": {"kind": "auto", "model": "m", **fields}})
    monkeypatch.setattr(AutoTeacher, "candidate", lambda self, kind: stand_ins[kind])
    ctx = FitContext(
        LabeledSet(TEXTS, GOLD),
        LABELS,
        tmp_path / "teacher",
        tmp_path / "checkpoints" / "teacher",
        make_accelerator("cpu", "no", 0),
        0,
    )
    stats = config.teacher.fit(ctx)
    return config.teacher, stats, tmp_path / "teacher"


@pytest.mark.parametrize("better", ["hf_encoder", "setfit"])
def test_the_candidate_that_cross_validates_better_is_chosen_and_fitted_on_every_text(tmp_path, monkeypatch, better):
    worse = "setfit" if better == "hf_encoder" else "hf_encoder"
    stand_ins = {better: StandIn(wrong_every=6), worse: StandIn(wrong_every=3)}
    teacher, stats, folder = fit_auto(tmp_path, monkeypatch, stand_ins)
    choice = json.loads((folder / "choice.json").read_text())
    assert choice["chosen"] == better and choice["fitted"] == [better] and stats["chosen"] == better
    assert choice["folds"] == choice["folds_done"] == 3 and not choice["cut_short"] and choice["labeled_texts"] == 60
    assert sum(choice["held_out_sizes"]) == 60
    for kind, wrong_every in ((better, 6), (worse, 3)):
        scores = choice["scores"][kind]
        assert len(scores["accuracy"]) == len(scores["log_loss"]) == len(scores["seconds"]) == 3
        # every text is held out once: the folds' mean accuracy is the share the stand-in gets right
        assert scores["accuracy_mean"] == pytest.approx(1 - 1 / wrong_every, abs=0.02)
        assert scores["accuracy_std"] == pytest.approx(float(np.std(scores["accuracy"])), abs=1e-4)
    assert "ensemble" not in choice["scores"]
    assert [p.name for p in folder.iterdir() if p.is_dir()] == [better]  # the worse one is not fitted
    assert json.loads((folder / better / "fitted.json").read_text()) == {"texts": 60}  # on all labeled texts
    assert not (tmp_path / "checkpoints" / "teacher" / "cv").exists() or not any(
        (tmp_path / "checkpoints" / "teacher" / "cv").iterdir()
    )  # the folds' models are deleted once scored
    assert stats["steps"] == 1 and stats["final_loss"] == 0.5  # the fitted teacher's curve, for the report

    loaded = teacher.load(folder, "cpu")
    expected = StandInLabeler(stand_ins[better], 60).logits(TEXTS[:5], 8)
    np.testing.assert_array_equal(loaded.logits(TEXTS[:5], 8), expected)  # the chosen teacher's own logits
    described = loaded.describe()
    assert described["params"] == 10
    (note,) = described["notes"]
    assert note.startswith(f"teacher.kind auto chose {better}: CV accuracy ")
    assert f"({worse}) over 3 folds on the 60 labeled texts" in note


def test_a_tie_in_accuracy_goes_to_the_lower_log_loss_then_to_the_cheaper_kind(tmp_path, monkeypatch):
    stand_ins = {"hf_encoder": StandIn(wrong_every=3, confidence=0.6), "setfit": StandIn(wrong_every=3)}
    _, _, folder = fit_auto(tmp_path / "a", monkeypatch, stand_ins)
    choice = json.loads((folder / "choice.json").read_text())
    # the same texts wrong: the same accuracy; the less confident one is less wrong on them (0.6 vs 0.9 on a wrong
    # class) but less right on the others, and here loses on log-loss
    a, b = choice["scores"]["hf_encoder"], choice["scores"]["setfit"]
    assert a["accuracy_mean"] == b["accuracy_mean"] and a["log_loss_mean"] != b["log_loss_mean"]
    lower = "hf_encoder" if a["log_loss_mean"] < b["log_loss_mean"] else "setfit"
    assert choice["chosen"] == lower and "its log-loss was lower" in choice["why"]

    same = {"hf_encoder": StandIn(wrong_every=4), "setfit": StandIn(wrong_every=4)}
    _, _, folder = fit_auto(tmp_path / "b", monkeypatch, same)
    choice = json.loads((folder / "choice.json").read_text())
    assert choice["chosen"] == "hf_encoder" and "and the cheaper" in choice["why"]


def test_an_ensemble_that_wins_is_chosen_and_labels_with_the_averaged_probabilities(tmp_path, monkeypatch):
    # wrong on different texts and unsure when wrong: the average of the two is right on every text
    stand_ins = {
        "hf_encoder": StandIn(wrong_every=3, wrong_confidence=0.5),
        "setfit": StandIn(wrong_every=3, offset=1, wrong_confidence=0.5),
    }
    teacher, _, folder = fit_auto(tmp_path, monkeypatch, stand_ins, ensemble=True)
    choice = json.loads((folder / "choice.json").read_text())
    assert choice["scores"]["ensemble"]["accuracy_mean"] == 1.0
    assert choice["chosen"] == "ensemble" and choice["fitted"] == ["hf_encoder", "setfit"]
    assert (folder / "hf_encoder" / "fitted.json").exists() and (folder / "setfit" / "fitted.json").exists()
    loaded = teacher.load(folder, "cpu")
    averaged = np.mean([softmax(StandInLabeler(s, 60).logits(TEXTS, 8)) for s in stand_ins.values()], axis=0)
    np.testing.assert_allclose(softmax(loaded.logits(TEXTS, 8)), averaged, atol=1e-5)
    described = loaded.describe()
    assert described["params"] == 20 and "chose the ensemble of hf_encoder and setfit" in described["notes"][0]


def test_a_spent_budget_cuts_the_cv_short_and_still_chooses(tmp_path, monkeypatch):
    stand_ins = {"hf_encoder": StandIn(wrong_every=3, sleep=0.05), "setfit": StandIn(sleep=0.05)}
    teacher, stats, folder = fit_auto(tmp_path, monkeypatch, stand_ins, budget_seconds=0.01)
    choice = json.loads((folder / "choice.json").read_text())
    # the first unit always runs; then the budget is spent: setfit (the better one here) is never scored
    assert choice["cut_short"] and stats["cut_short"] and choice["not_scored"] == ["setfit"]
    assert choice["folds_done"] == 1 and len(choice["scores"]["hf_encoder"]["accuracy"]) == 1
    assert choice["scores"]["setfit"]["accuracy"] == []
    assert choice["chosen"] == "hf_encoder" and (folder / "hf_encoder").is_dir()
    assert "setfit not scored within the budget" in choice["why"]
    (note,) = teacher.load(folder, "cpu").describe()["notes"]
    assert "chose hf_encoder" in note and "CV cut short: the 0.01s budget ran out after 1 of 3 folds" in note


def test_an_interrupted_cv_resumes_with_the_units_it_scored(tmp_path, monkeypatch):
    stand_ins = {"hf_encoder": StandIn(wrong_every=3), "setfit": StandIn(wrong_every=6)}
    state = tmp_path / "checkpoints" / "teacher" / "cv.json"
    state.parent.mkdir(parents=True)
    # a previous attempt scored hf_encoder on fold 1 (a made-up score: reused, not recomputed)
    unit = {"accuracy": 0.0, "log_loss": 9.0, "seconds": 1.0, "probabilities": []}
    state.write_text(json.dumps({"units": {"hf_encoder": [unit]}}))
    _, _, folder = fit_auto(tmp_path, monkeypatch, stand_ins)
    choice = json.loads((folder / "choice.json").read_text())
    assert choice["scores"]["hf_encoder"]["accuracy"][0] == 0.0 and choice["folds_done"] == 3


def test_candidate_settings_are_their_kinds_fields_with_the_shared_encoder(tiny_teacher_dir):
    raw = {
        "data": {"train": "unused.jsonl"},
        "teacher": {
            "kind": "auto",
            "model": str(tiny_teacher_dir),
            "max_length": 32,
            "hf_encoder": {"epochs": 3},
            "setfit": {"num_iterations": 2},
        },
    }
    teacher = build_config(raw).teacher
    hf, setfit = teacher.candidate("hf_encoder"), teacher.candidate("setfit")
    assert isinstance(hf, HFEncoderTeacher) and isinstance(setfit, SetFitTeacher)
    assert hf.model == setfit.model == str(tiny_teacher_dir) and hf.max_length == setfit.max_length == 32
    assert hf.epochs == 3 and hf.learning_rate == HFEncoderTeacher(model="m").learning_rate
    assert setfit.num_iterations == 2 and setfit.head_c == SetFitTeacher(model="m").head_c
    assert teacher.inputs() == [str(tiny_teacher_dir)]
    assert teacher.student_init(Path("teacher")) == (Path("teacher"), str(tiny_teacher_dir))
    with pytest.raises(ConfigError, match=r"unknown config key 'teacher.hf_encoder.epoch'; did you mean 'teacher"):
        build_config({**raw, "teacher": {**raw["teacher"], "hf_encoder": {"epoch": 3}}})
    with pytest.raises(ConfigError, match=r"teacher.setfit.num_iterations"):
        build_config({**raw, "teacher": {**raw["teacher"], "setfit": {"num_iterations": 0}}})
    with pytest.raises(ConfigError, match="two or more distinct teacher kinds"):
        build_config({**raw, "teacher": {**raw["teacher"], "candidates": ["setfit"]}})


def test_a_missing_setfit_package_is_one_clear_line(monkeypatch, tiny_teacher_dir):
    import importlib.util

    from gendistill.teachers import auto as module

    real = importlib.util.find_spec
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None if name == "setfit" else real(name))
    teacher = build_config({"data": {"train": "x.jsonl"}, "teacher": {"kind": "auto", "model": str(tiny_teacher_dir)}})
    with pytest.raises(ModelLoadError, match=r"auto's setfit candidate needs .*pip install 'gendistill\[setfit\]'"):
        teacher.teacher.check()


def test_too_few_texts_per_class_for_the_folds_is_one_line_at_preflight(task_dir, tiny_teacher_dir, tmp_path):
    rows = [r for r in make_rows(20, 0) if r["label"] != "weather"] + make_rows(2, 5)
    counts = {label: sum(r["label"] == label for r in rows) for label in LABELS}
    assert counts["weather"] < 3 <= min(counts["cooking"], counts["sports"])
    write_jsonl(tmp_path / "train.jsonl", rows)
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["data"]["train"] = str(tmp_path / "train.jsonl")
    config["teacher"] = {"kind": "auto", "model": str(tiny_teacher_dir), "folds": 3}
    with pytest.raises(ConfigError) as error:
        Run(build_config(config), tmp_path / "run").run()
    message = str(error.value)
    assert "\n" not in message
    assert f"teacher.folds=3 but class 'weather' has only {counts['weather']} labeled text" in message
    assert not (tmp_path / "run" / "teacher").exists()  # refused before any training

    config["data"] = {"label_names": LABELS, "test": str(task_dir / "test.jsonl")}  # a zero-label start
    with pytest.raises(ConfigError, match="teacher.kind 'auto' trains on labeled texts, and data.train is not set"):
        Run(build_config(config), tmp_path / "run0").run()


def test_a_pipeline_with_the_auto_teacher_reports_its_choice(task_dir, tiny_teacher_dir, tmp_path):
    pytest.importorskip("setfit")
    import torch

    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["teacher"] = {
        "kind": "auto",
        "model": str(tiny_teacher_dir),
        "max_length": 32,
        "folds": 2,
        "hf_encoder": {"epochs": 3, "batch_size": 16, "learning_rate": 1e-3},
        "setfit": {"num_iterations": 2, "body_learning_rate": 1e-3},
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = Run(build_config(config), tmp_path / "run").run()
    finally:
        torch.set_num_threads(threads)
    choice = json.loads((tmp_path / "run" / "teacher" / "choice.json").read_text())
    assert choice["folds_done"] == 2 and choice["chosen"] in ("hf_encoder", "setfit")
    assert all(len(choice["scores"][kind]["accuracy"]) == 2 for kind in ("hf_encoder", "setfit"))
    assert (tmp_path / "run" / "teacher" / choice["chosen"]).is_dir()
    assert report.teacher.kind == "auto" and report.teacher.accuracy is not None and report.teacher.params
    assert report.student.accuracy is not None
    assert any(note.startswith(f"teacher.kind auto chose {choice['chosen']}: CV accuracy") for note in report.notes)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["teacher"]["summary"]["chosen"] == choice["chosen"]
