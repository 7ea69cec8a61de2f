"""`auto` teacher: choose the teacher kind by cross-validation on the labeled texts, then fit the chosen one.

Why: the student follows its teacher, and which teacher is better depends on the data. As measured for issue 21, on
held-back short questions (64 per class) SetFit reached 92.4 where the fine-tuned encoder reached 89.2 (students 86.6
vs 84.0); on sst2 SetFit led by 3.8 points; on ag_news they tied. Nothing but the labeled texts may decide (the test set
is for the report only), so the candidates (`hf_encoder`, `setfit`, both on `model`) are scored by stratified k-fold
cross-validation on the labeled set: held-out accuracy first, log-loss to break a tie, and an exact tie goes to the
cheaper kind (the fine-tuned encoder, then SetFit, then the ensemble). With `ensemble: true` the average of the
candidates' probabilities on each held-out fold is scored too (no extra training), and chosen if it wins.

The CV runs fold by fold, every candidate on fold 1, then fold 2, ... so that when `budget_seconds` runs out the
candidates have been scored on the same folds; a unit (one candidate on one fold) is not started when the
candidate's mean time so far would overrun the budget. The first unit always runs. Candidates are compared on the
folds they all completed; one that no fold scored is left out (and the choice says so). The budget covers the CV
only: the chosen candidate (or, for the ensemble, every candidate) is then fitted on all labeled texts.

What is saved (`teacher/`): each fitted candidate in its own subfolder (`hf_encoder/`, `setfit/`) as that kind saves
it, and `choice.json`: the per-fold scores, their mean and spread, the choice and why, the seconds spent and the
folds done. Loading reads `choice.json`; the report's notes say what was chosen and why. An ensemble labels with the
log of its averaged probabilities (softmax of those logits is the average). An interrupted CV resumes at the next
unit (the scored units are kept in the stage's checkpoint folder).
"""

from __future__ import annotations

import gc
import importlib.util
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, create_model, field_validator

from gendistill import progress
from gendistill.data.task import LabeledSet
from gendistill.errors import ConfigError, ModelLoadError, RunDirError
from gendistill.io import read_json, write_json
from gendistill.sections import Section
from gendistill.teachers.base import FitContext, LoadedTeacher, TeacherConfig
from gendistill.teachers.hf_encoder import EncoderTeacherConfig, HFEncoderTeacher
from gendistill.teachers.setfit import SetFitTeacher

if TYPE_CHECKING:
    import torch

CHOICE_FILE = "choice.json"
CV_STATE_FILE = "cv.json"
ENSEMBLE = "ensemble"
CandidateKind = Literal["hf_encoder", "setfit"]
CANDIDATE_CLASSES: dict[str, type[EncoderTeacherConfig]] = {"hf_encoder": HFEncoderTeacher, "setfit": SetFitTeacher}
COST_ORDER = ("hf_encoder", "setfit", ENSEMBLE)  # an exact tie goes to the first: the cheaper to fit and to run
# set once on the auto section, the same for every candidate (one encoder, one tokenizer, one input length)
SHARED_FIELDS = ("kind", "model", "max_length", "trust_remote_code", "allow_pickle_weights", "label_batch_size")
MIN_PROBABILITY = 1e-7  # floor before a log: finite log-loss and ensemble logits


def _settings_section(kind: str) -> type[Section]:
    """A config section with a candidate kind's own fields (defaults and constraints included), less the shared ones:
    `teacher.hf_encoder.epochs` is validated exactly as `teacher.epochs` of `kind: hf_encoder`."""
    cls = CANDIDATE_CLASSES[kind]
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in cls.model_fields.items() if name not in SHARED_FIELDS
    }
    return create_model(
        f"{cls.__name__}Settings", __base__=Section, __doc__=f"teacher.{kind}: {kind}'s settings", **fields
    )


HFEncoderSettings = _settings_section("hf_encoder")
SetFitSettings = _settings_section("setfit")


class AutoTeacher(EncoderTeacherConfig):
    """The fine-tuned encoder or SetFit (or their ensemble), whichever cross-validates best on the labeled texts."""

    kind: Literal["auto"] = "auto"
    how_trained: ClassVar[str] = (
        "chosen by cross-validation on the labeled examples between a fine-tuned encoder and SetFit, then trained on "
        "all of them (the run's report says which)"
    )
    model: str = Field(description="the encoder both candidates start from: Hugging Face id or local folder")
    candidates: list[CandidateKind] = Field(
        default_factory=lambda: ["hf_encoder", "setfit"], description="teacher kinds to choose between (two or more)"
    )
    folds: Annotated[int, Field(ge=2, le=20)] = Field(
        default=3, description="stratified cross-validation folds on the labeled texts (every class needs this many)"
    )
    budget_seconds: Annotated[float, Field(gt=0)] = Field(
        default=3600,
        description="time for the cross-validation (not the final fit); when it runs out, fewer folds are scored",
    )
    ensemble: bool = Field(
        default=False, description="also score the average of the candidates' probabilities, and choose it if it wins"
    )
    hf_encoder: HFEncoderSettings = Field(  # type: ignore[valid-type]
        default_factory=HFEncoderSettings, description="settings of the hf_encoder candidate (its kind's fields)"
    )
    setfit: SetFitSettings = Field(  # type: ignore[valid-type]
        default_factory=SetFitSettings, description="settings of the setfit candidate (its kind's fields)"
    )

    @field_validator("candidates")
    @classmethod
    def _two_distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value) or len(value) < 2:
            raise ValueError("give two or more distinct teacher kinds (hf_encoder, setfit)")
        return value

    def candidate(self, kind: str) -> TeacherConfig:
        """The candidate's own config: its section's settings with the shared fields of this one."""
        shared = {name: getattr(self, name) for name in SHARED_FIELDS if name != "kind"}
        return CANDIDATE_CLASSES[kind](**shared, **getattr(self, kind).model_dump())

    def inputs(self) -> list[str]:
        return list(dict.fromkeys(path for kind in self.candidates for path in self.candidate(kind).inputs()))

    def check(self) -> None:
        if "setfit" in self.candidates and importlib.util.find_spec("setfit") is None:
            raise ModelLoadError(
                "teacher.kind auto's setfit candidate needs the setfit package: pip install 'gendistill[setfit]' "
                "(or use teacher.kind hf_encoder)"
            )
        for kind in self.candidates:
            self.candidate(kind).check()

    def check_labeled(self, train: LabeledSet, label_names: list[str]) -> None:
        """Stratified k-fold CV needs `folds` labeled texts in every class."""
        counts = np.bincount(np.asarray(train.labels, dtype=np.int64), minlength=len(label_names))
        fewest = int(counts.argmin())
        if counts[fewest] >= self.folds:
            return
        fix = f"set teacher.folds to at most {counts[fewest]}, label more" if counts[fewest] >= 2 else "label more"
        raise ConfigError(
            f"teacher.folds={self.folds} but class {label_names[fewest]!r} has only {counts[fewest]} labeled "
            f"text{'s' if counts[fewest] != 1 else ''}: teacher.kind auto cross-validates on the labeled texts and "
            f"every class needs teacher.folds of them; {fix}, or pick teacher.kind hf_encoder or setfit"
        )

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        if ctx.accelerator is not None and ctx.accelerator.num_processes > 1:
            raise ConfigError(
                "teacher.kind auto fits in one process: run `gendistill train-teacher` without accelerate launch "
                "first; the later stages then run on every process"
            )
        self.check_labeled(ctx.train, ctx.label_names)
        cv = cross_validate(self, ctx)
        choice = choose(self, cv, len(ctx.train))
        fitted = list(self.candidates) if choice["chosen"] == ENSEMBLE else [choice["chosen"]]
        progress.log(f"teacher auto: chose {choice['chosen']}: {choice['why']}; fitting {' and '.join(fitted)}")
        tmp = ctx.out_dir.with_name(ctx.out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        stats: dict[str, Any] = {}
        started = time.perf_counter()
        for kind in fitted:
            final = replace(ctx, out_dir=tmp / kind, checkpoint_dir=ctx.checkpoint_dir / f"final-{kind}")
            stats[kind] = self.candidate(kind).fit(final)
        choice.update(fitted=fitted, fit_seconds=round(time.perf_counter() - started, 2))
        write_json(tmp / CHOICE_FILE, choice)
        shutil.rmtree(ctx.out_dir, ignore_errors=True)
        tmp.rename(ctx.out_dir)
        summary = {"chosen": choice["chosen"], "cv_accuracy": choice["cv_accuracy"], "folds_done": choice["folds_done"]}
        summary.update(cut_short=choice["cut_short"], cv_seconds=choice["cv_seconds"], candidates=stats)
        if len(fitted) == 1:  # the training curve of the one fitted teacher (steps, final loss) as a plain kind's
            summary.update({k: v for k, v in stats[fitted[0]].items() if k in ("steps", "final_loss")})
        return summary

    def load(self, directory: Path, device: torch.device | str) -> AutoChosenTeacher:
        path = directory / CHOICE_FILE
        if not path.exists():
            raise RunDirError(f"{directory}: no {CHOICE_FILE}: the auto teacher was not fitted here; rerun the teacher")
        choice = read_json(path)
        members = [self.candidate(kind).load(directory / kind, device) for kind in choice["fitted"]]
        return AutoChosenTeacher(members, choice)

    def student_init(self, directory: Path) -> tuple[Path, str]:
        """The (first) fitted candidate's folder: both kinds save the encoder's tokenizer with the encoder. Before
        the teacher is fitted (preflight), the teacher folder itself."""
        path = directory / CHOICE_FILE
        if path.exists():
            return directory / read_json(path)["fitted"][0], self.model
        return directory, self.model


def cross_validate(config: AutoTeacher, ctx: FitContext) -> dict[str, Any]:
    """Score every candidate on every fold (fold-major) until done or out of budget. Returns {"units": {kind:
    [{accuracy, log_loss, seconds, probabilities}, ...]}, "seconds", "cut_short", "gold"}: `gold[i]` are the labels
    of fold i's held-out texts, in the order of its units' probabilities."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(ctx.train.labels, dtype=np.int64)
    splitter = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=ctx.seed)
    splits = list(splitter.split(np.zeros(len(labels)), labels))
    state_path = ctx.checkpoint_dir / CV_STATE_FILE
    state = read_json(state_path) if state_path.exists() else {"units": {}}  # a resumed stage keeps its scored units
    units: dict[str, list[dict[str, Any]]] = {kind: state["units"].get(kind, []) for kind in config.candidates}
    spent = sum(unit["seconds"] for kind_units in units.values() for unit in kind_units)
    cut_short = False
    device = ctx.accelerator.device if ctx.accelerator is not None else "cpu"
    for fold, (train_rows, held_rows) in enumerate(splits):
        for kind in config.candidates:
            if len(units[kind]) > fold:
                continue
            done = units[kind]
            estimate = float(np.mean([u["seconds"] for u in done])) if done else 0.0
            if spent > 0 and spent + estimate > config.budget_seconds:
                cut_short = True
                break
            started = time.perf_counter()
            unit = score_fold(config, kind, ctx, fold, train_rows, held_rows, device)
            unit["seconds"] = round(time.perf_counter() - started, 3)
            spent += unit["seconds"]
            done.append(unit)
            write_json(state_path, {"units": units})
            progress.log(
                f"teacher auto: {kind} fold {fold + 1}/{config.folds}: accuracy {unit['accuracy']:.3f}, "
                f"log-loss {unit['log_loss']:.3f} ({unit['seconds']:.0f}s)"
            )
        if cut_short:
            break
    gold = [labels[rows].tolist() for _, rows in splits]
    return {"units": units, "seconds": spent, "cut_short": cut_short, "gold": gold}


def score_fold(
    config: AutoTeacher,
    kind: str,
    ctx: FitContext,
    fold: int,
    train_rows: np.ndarray,
    held_rows: np.ndarray,
    device: Any,
) -> dict[str, Any]:
    """Fit one candidate on the other folds, score it on this one, and delete what it wrote."""
    texts, labels = ctx.train.texts, ctx.train.labels
    work = ctx.checkpoint_dir / "cv" / f"{kind}-fold{fold}"
    fold_ctx = replace(
        ctx,
        train=LabeledSet([texts[i] for i in train_rows], [labels[i] for i in train_rows]),
        out_dir=work / "model",
        checkpoint_dir=work / "checkpoints",
    )
    candidate = config.candidate(kind)
    candidate.fit(fold_ctx)
    teacher = candidate.load(fold_ctx.out_dir, device)
    logits = teacher.logits([texts[i] for i in held_rows], config.label_batch_size)
    del teacher
    gc.collect()
    shutil.rmtree(work, ignore_errors=True)
    probabilities = softmax(logits)
    gold = np.asarray([labels[i] for i in held_rows], dtype=np.int64)
    return {**fold_scores(probabilities, gold), "probabilities": probabilities.round(6).tolist()}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fold_scores(probabilities: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    accuracy = float((probabilities.argmax(axis=1) == gold).mean())
    log_loss = float(-np.log(np.maximum(probabilities[np.arange(len(gold)), gold], MIN_PROBABILITY)).mean())
    return {"accuracy": accuracy, "log_loss": log_loss}


def choose(config: AutoTeacher, cv: dict[str, Any], n_texts: int) -> dict[str, Any]:
    """The choice, as `choice.json` records it: per-fold scores, the compared folds' means, the chosen kind and why."""
    units = cv["units"]
    scored = [kind for kind in config.candidates if units[kind]]
    not_scored = [kind for kind in config.candidates if not units[kind]]
    compared_folds = min(len(units[kind]) for kind in scored)
    scores: dict[str, dict[str, Any]] = {}
    for kind in config.candidates:
        scores[kind] = {name: [u[name] for u in units[kind]] for name in ("accuracy", "log_loss", "seconds")}
    if config.ensemble and not not_scored:
        ensemble_units = []
        for fold in range(compared_folds):
            averaged = np.mean([np.asarray(units[kind][fold]["probabilities"]) for kind in scored], axis=0)
            gold = np.asarray(cv["gold"][fold], dtype=np.int64)
            ensemble_units.append(fold_scores(averaged, gold))
        scores[ENSEMBLE] = {name: [u[name] for u in ensemble_units] for name in ("accuracy", "log_loss")}
    for row in scores.values():
        compared = row["accuracy"][:compared_folds]
        if compared:
            row["accuracy_mean"] = round(float(np.mean(compared)), 4)
            row["accuracy_std"] = round(float(np.std(compared)), 4)
            row["log_loss_mean"] = round(float(np.mean(row["log_loss"][:compared_folds])), 4)
    contenders = sorted(
        (kind for kind in scores if "accuracy_mean" in scores[kind]),
        key=lambda kind: (-scores[kind]["accuracy_mean"], scores[kind]["log_loss_mean"], COST_ORDER.index(kind)),
    )
    chosen = contenders[0]
    why = explain(chosen, contenders, scores, compared_folds, n_texts)
    if not_scored:
        why += f"; {' and '.join(not_scored)} not scored within the budget"
    return {
        "candidates": list(config.candidates),
        "ensemble": config.ensemble,
        "folds": config.folds,
        "folds_done": compared_folds,
        "labeled_texts": n_texts,
        "held_out_sizes": [len(gold) for gold in cv["gold"]],
        "scores": scores,
        "chosen": chosen,
        "cv_accuracy": scores[chosen]["accuracy_mean"],
        "why": why,
        "budget_seconds": config.budget_seconds,
        "cv_seconds": round(cv["seconds"], 2),
        "cut_short": cv["cut_short"],
        "not_scored": not_scored,
    }


def explain(chosen: str, contenders: list[str], scores: dict[str, dict[str, Any]], folds: int, n_texts: int) -> str:
    """One sentence: the chosen kind's CV accuracy against the others', and what broke a tie."""
    over = f"over {folds} fold{'s' if folds != 1 else ''} on the {n_texts} labeled texts"
    accuracy = scores[chosen]["accuracy_mean"]
    others = contenders[1:]
    if not others:
        return f"CV accuracy {100 * accuracy:.1f}% {over}, the only candidate scored"
    versus = ", ".join(f"{100 * scores[k]['accuracy_mean']:.1f}% ({k})" for k in others)
    runner_up = others[0]
    if scores[runner_up]["accuracy_mean"] < accuracy:
        return f"CV accuracy {100 * accuracy:.1f}% vs {versus} {over}"
    loss, other_loss = scores[chosen]["log_loss_mean"], scores[runner_up]["log_loss_mean"]
    if loss < other_loss:
        return (
            f"CV accuracy {100 * accuracy:.1f}% vs {versus} {over}: tied with {runner_up}, and its log-loss was lower "
            f"({loss:.3f} vs {other_loss:.3f})"
        )
    return (
        f"CV accuracy {100 * accuracy:.1f}% vs {versus} {over}: tied with {runner_up} in accuracy and log-loss, "
        "and the cheaper"
    )


class AutoChosenTeacher:
    """The chosen teacher, or the ensemble of the fitted candidates (log of the averaged probabilities), with the
    choice for the report."""

    def __init__(self, members: list[LoadedTeacher], choice: dict[str, Any]):
        self.members, self.choice = members, choice

    def logits(self, texts: list[str], batch_size: int) -> np.ndarray:
        if len(self.members) == 1:  # the chosen teacher's own scores: the student's losses see them unchanged
            return self.members[0].logits(texts, batch_size)
        averaged = np.mean([softmax(m.logits(texts, batch_size).astype(np.float64)) for m in self.members], axis=0)
        return np.log(np.maximum(averaged, MIN_PROBABILITY)).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        described = [member.describe() for member in self.members]
        out: dict[str, Any] = {}
        for key in ("params", "size_bytes"):
            values = [d.get(key) for d in described]
            out[key] = None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]
        notes = [note for d in described for note in d.get("notes", [])]
        return {**out, "notes": [*notes, choice_note(self.choice)]}


def choice_note(choice: dict[str, Any]) -> str:
    """The report's line: what was chosen, why, and what the budget allowed."""
    chosen = choice["chosen"]
    label = f"the ensemble of {' and '.join(choice['fitted'])}" if chosen == ENSEMBLE else chosen
    budget = f"{choice['cv_seconds']:.0f}s of its {choice['budget_seconds']:g}s budget"
    if choice["cut_short"]:
        budget = (
            f"CV cut short: the {choice['budget_seconds']:g}s budget ran out after {choice['folds_done']} of "
            f"{choice['folds']} folds"
        )
    return f"teacher.kind auto chose {label}: {choice['why']} ({budget})"
