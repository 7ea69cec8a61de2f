"""Train a student on one sequence of examples: distillation on the teacher's logits (plus cross-entropy on gold
labels) when the examples carry them, plain cross-entropy on gold labels when they do not. A multi-label student
(each label its own yes/no question) uses the binary counterparts: BCE against the teacher's tempered sigmoids,
BCE on the 0/1 gold rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from gendistill.config import StudentConfig
from gendistill.evaluation.multilabel import indicator
from gendistill.students.classifier import StudentClassifier
from gendistill.students.examples import Example, Examples
from gendistill.students.losses import distillation_loss, multi_label_distillation_loss
from gendistill.training.budget import steps_for_epochs
from gendistill.training.loop import StopTraining, fit
from gendistill.training.recipes import student_recipe

# a student's gradients are clipped to this norm: its recurrences and the distillation loss can spike early
MAX_GRAD_NORM = 5.0


def train_student(
    student: StudentClassifier,
    examples: Examples,
    config: StudentConfig,
    accelerator: Accelerator,
    *,
    seed: int,
    steps: int | None = None,
    validation: tuple[list[str], list] | None = None,
    description: str = "student",
    checkpoint_dir: Path | None = None,
    stop_after: int | None = None,
) -> dict:
    """Train in place for `steps` (default: `config.epochs` over the examples). With teacher logits in the examples,
    distill (MSE or KL, plus alpha * CE where gold >= 0); without, plain cross-entropy on gold labels. With
    `validation`, keep the epoch with the best validation accuracy, and with `stop_after` too, stop once it has not
    improved for that many epochs. A multi-label student keeps the epoch with the best validation micro-averaged
    precision (threshold-free: the per-label thresholds are tuned after training)."""
    distilling = examples.has_logits
    multi_label = student.multi_label
    steps = steps or steps_for_epochs(config.epochs, len(examples), config.batch_size)
    optimizer, scheduler = student_recipe(
        student.model.parameter_groups(), learning_rate=config.learning_rate, steps=steps
    )

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        logits = model(batch["ids"], batch["lengths"])
        if multi_label:
            if not distilling:
                gold = batch["gold"].float()
                return F.binary_cross_entropy_with_logits(logits, gold, reduction="none").sum(), len(logits)
            loss = multi_label_distillation_loss(
                logits, batch["teacher"], batch["gold"], config.temperature, config.alpha, reduction="sum"
            )
            return loss, len(logits)
        if not distilling:
            return F.cross_entropy(logits, batch["gold"], reduction="sum"), len(logits)
        loss = distillation_loss(
            logits, batch["teacher"], batch["gold"], config.loss, config.temperature, config.alpha, reduction="sum"
        )
        return loss, len(logits)

    def validation_accuracy(model: torch.nn.Module) -> float:
        assert validation is not None
        student.model = model
        if multi_label:
            # threshold-free: with rare labels no probability may reach 0.5 for many epochs, and micro-F1 at 0.5
            # would then tie at 0 and keep the first epoch; the per-label thresholds are tuned after training
            from sklearn.metrics import average_precision_score

            truth = indicator(validation[1], len(student.label_names))
            accuracy = float(average_precision_score(truth, student.predict_proba(validation[0]), average="micro"))
        else:
            accuracy = float(np.mean(student.logits(validation[0]).argmax(axis=1) == np.asarray(validation[1])))
        if stop_after is not None:
            seen.append(accuracy)
            if len(seen) - 1 - int(np.argmax(seen)) >= stop_after:  # no new best for `stop_after` epochs
                raise StopTraining(accuracy)
        return accuracy

    seen: list[float] = []

    student.model, result = fit(
        accelerator=accelerator,
        model=student.model,
        optimizer=optimizer,
        scheduler=scheduler,
        examples=examples,
        batch_size=config.batch_size,
        collate=collate,
        loss_fn=loss_fn,
        steps=steps,
        seed=seed,
        description=f"distill: {description}",
        name=description.replace(" ", "_"),
        checkpoint_dir=checkpoint_dir,
        max_grad_norm=MAX_GRAD_NORM,
        evaluate=validation_accuracy if validation is not None else None,
        metric_name="micro-AP" if multi_label else "accuracy",
        hparams={"student": config.model_dump(mode="json"), "examples": len(examples), "distilled": distilling},
    )
    return {
        "steps": result.steps,
        "epochs": result.epochs,
        "history": result.history,
        "resumed_from_epoch": result.resumed_from_epoch,
        **({"best_validation_accuracy": result.best_metric} if result.best_metric is not None else {}),
    }


def collate(batch: list[Example]) -> dict[str, torch.Tensor]:
    """Right-pad the ids of a batch with [PAD]=0 to its longest text; stack logits and gold labels (ids, or 0/1
    rows in a multi-label task)."""
    width = max(len(ids) for ids, _, _ in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (seq, _, _) in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq)
    return {
        "ids": ids,
        "lengths": torch.tensor([len(seq) for seq, _, _ in batch]),
        "teacher": torch.from_numpy(np.stack([logits for _, logits, _ in batch])),
        "gold": torch.from_numpy(np.asarray([gold for _, _, gold in batch], dtype=np.int64)),
    }
