"""The distillation temperature chosen per run on held-out teacher-labeled transfer texts (student.choose_temperature).

Why: the temperature that suits one teacher and task does not suit another. On the harness datasets (RESULTS.md,
"The student defaults chosen again on dev agreement") T = 1 led T = 2 by 0.4-1.7 points of agreement on the
many-class short-text sets and trailed by up to 0.2 on ag_news and sst2, and a SetFit teacher's flat logits want
T = 1 far more than a fine-tuned encoder's. No single default wins everywhere, but the run already holds what
decides it: teacher-labeled texts. So each candidate is scored by 2-fold cross-fitting on the transfer texts: a
copy of the student trained on one half (plus every labeled text) at that temperature, scored by its agreement with
the teacher's label on the other half, and the other way round. Every transfer text is scored once per candidate,
on the same texts for every candidate, so the comparison is paired; the test file is never read.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from gendistill import progress
from gendistill.config import StudentConfig
from gendistill.students.classifier import StudentClassifier
from gendistill.students.examples import Examples, ExampleSubset
from gendistill.students.trainer import collate, train_student
from gendistill.training import tracking

FOLDS = 2
# below this many transfer texts per half, a point of agreement is a handful of texts: the choice would be noise
MIN_HELD_OUT = 50


def choose_temperature(
    student: StudentClassifier,
    examples: Examples,
    config: StudentConfig,
    accelerator: Accelerator,
    *,
    seed: int,
    candidates: list[float],
) -> dict[str, Any]:
    """{"temperature": the candidate whose students agree most with the teacher on held-out transfer texts,
    "agreement": {candidate: mean held-out agreement}, "held_out": texts scored, "folds": 2}, or, with too few
    transfer texts to tell, {"temperature": config.temperature, "reason": ...}. Ties go to `config.temperature`
    when it is a candidate, else to the first candidate. `student` is not changed (each fold trains a copy)."""
    stored = getattr(examples, "gold", None)  # an ExampleStore's memory-mapped column: no pass over the token ids
    gold = np.asarray(stored) if stored is not None else np.asarray([examples[i][2] for i in range(len(examples))])
    transfer = np.flatnonzero(gold < 0)  # texts the teacher labeled and no human did
    labeled = np.flatnonzero(gold >= 0)
    if len(transfer) < FOLDS * MIN_HELD_OUT:
        return {
            "temperature": config.temperature,
            "reason": f"{len(transfer)} transfer texts: too few to hold out {MIN_HELD_OUT} per fold",
        }
    progress.log(
        f"distill: choosing the temperature among {', '.join(f'{c:g}' for c in candidates)} on {len(transfer)} "
        f"held-out transfer texts ({FOLDS}-fold: {FOLDS * len(candidates)} trial students at half size)"
    )
    order = np.random.default_rng(seed).permutation(transfer)
    halves = np.array_split(order, FOLDS)
    teacher = [_teacher_labels(examples, held) for held in halves]  # the same for every candidate: read once
    agreement: dict[float, float] = {}
    trial_number = 0
    for candidate in candidates:
        agreed = 0
        for fold, held in enumerate(halves):
            train_rows = np.concatenate([labeled, *(half for other, half in enumerate(halves) if other != fold)])
            trial = copy.deepcopy(student)
            with progress.muted(), tracking.paused():  # a trial's epochs are not the run's training curve
                train_student(
                    trial,
                    ExampleSubset(examples, train_rows.tolist()),
                    config.model_copy(update={"temperature": candidate}),
                    accelerator,
                    seed=seed + fold,
                    description=f"temperature {candidate:g} fold {fold + 1}",
                )
            matches = int(np.sum(_predicted(trial, examples, held) == teacher[fold]))
            agreed += matches
            trial_number += 1
            progress.log(
                f"distill: trial {trial_number}/{FOLDS * len(candidates)} (T = {candidate:g}, fold {fold + 1}): "
                f"{matches / len(held):.1%} agreement on {len(held)} held-out texts"
            )
        agreement[candidate] = agreed / len(transfer)
    best = max(agreement.values())
    winners = [candidate for candidate, value in agreement.items() if value >= best - 1e-12]
    chosen = config.temperature if config.temperature in winners else winners[0]
    choice = {
        "temperature": chosen,
        "agreement": {f"{candidate:g}": round(value, 4) for candidate, value in agreement.items()},
        "held_out": int(len(transfer)),
        "folds": FOLDS,
    }
    progress.log(f"distill: {describe(choice)}")
    return choice


def describe(choice: dict[str, Any]) -> str:
    """One line for the log and the report: what was chosen and on what."""
    if "agreement" not in choice:
        return f"distillation temperature {choice['temperature']:g} kept: {choice['reason']}"
    scores = ", ".join(f"{value:.1%} at T = {candidate}" for candidate, value in choice["agreement"].items())
    return (
        f"distillation temperature {choice['temperature']:g} chosen (student.choose_temperature): agreement with "
        f"the teacher on {choice['held_out']} held-out transfer texts ({choice['folds']}-fold) {scores}"
    )


def _teacher_labels(examples: Examples, rows: np.ndarray) -> np.ndarray:
    return np.asarray([int(np.argmax(examples[int(i)][1])) for i in rows])


@torch.inference_mode()
def _predicted(student: StudentClassifier, examples: Examples, rows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The student's label for each example of `rows`, from the token ids the examples already hold."""
    model = student.model
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(rows), batch_size):
        batch = collate([examples[int(i)] for i in rows[start : start + batch_size]])
        out.append(model(batch["ids"].to(device), batch["lengths"].to(device)).argmax(dim=1).cpu().numpy())
    return np.concatenate(out)
