"""Distillation losses as pure functions (pinned against naive references in tests/test_losses.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mse_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Per-example mean squared error between logits (Tang et al. 2019): [batch]."""
    return ((student_logits - teacher_logits) ** 2).mean(dim=-1)


def kl_soft_targets(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-example KL(teacher_T || student_T) * T^2 (Hinton et al. 2015), so gradients keep their scale: [batch]."""
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    return (teacher.exp() * (teacher - student)).sum(dim=-1) * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    gold_labels: torch.Tensor,
    kind: str = "mse",
    temperature: float = 1.0,
    alpha: float = 0.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Batch loss: distillation on every example; examples with a gold label (>= 0) mix in cross-entropy as
    alpha * CE + (1 - alpha) * distill. Unlabeled (transfer) examples carry -1."""
    if kind == "mse":
        distill = mse_logits(student_logits, teacher_logits)
    elif kind == "kl":
        distill = kl_soft_targets(student_logits, teacher_logits, temperature)
    else:
        raise ValueError(f"unknown distillation loss {kind!r}")
    labeled = gold_labels >= 0
    cross_entropy = F.cross_entropy(student_logits, gold_labels.clamp(min=0), reduction="none")
    per_example = torch.where(labeled, alpha * cross_entropy + (1 - alpha) * distill, distill)
    return per_example.sum() if reduction == "sum" else per_example.mean()


def multi_label_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    gold: torch.Tensor,
    temperature: float = 1.0,
    alpha: float = 0.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Multi-label batch loss: each label is its own yes/no question, so the soft target of a label is the
    teacher's sigmoid at temperature T and the loss is binary cross-entropy against it, summed over labels and
    scaled by T^2 as the single-label KL is. Rows with gold labels (a 0/1 row; unlabeled rows carry -1 in every
    column) mix in BCE on the gold as alpha * BCE + (1 - alpha) * distill."""
    targets = torch.sigmoid(teacher_logits / temperature)
    distill = F.binary_cross_entropy_with_logits(student_logits / temperature, targets, reduction="none").sum(-1)
    distill = distill * temperature**2
    labeled = (gold >= 0).all(dim=-1)
    gold_bce = F.binary_cross_entropy_with_logits(student_logits, gold.clamp(min=0).float(), reduction="none").sum(-1)
    per_example = torch.where(labeled, alpha * gold_bce + (1 - alpha) * distill, distill)
    return per_example.sum() if reduction == "sum" else per_example.mean()
