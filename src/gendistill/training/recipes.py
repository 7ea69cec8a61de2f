"""One optimizer and learning-rate schedule per model family, so every loop of a family trains the same way:

- transformers (the teacher's and the generator's fine-tuning): AdamW with weight decay, linear warmup, then
  linear decay to zero, the Hugging Face fine-tuning recipe;
- students: Adam over the network's parameter groups, cosine decay to 5% of the learning rate.

Callers give the step count (training.budget turns epochs into steps).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# biases and normalization weights, by the end of their parameter names
NORMS_AND_BIASES = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
# a student's cosine schedule ends at this fraction of its learning rate, not at zero
STUDENT_FINAL_LR_FRACTION = 0.05


def transformer_recipe(
    model: nn.Module,
    *,
    learning_rate: float,
    steps: int,
    weight_decay: float = 0.01,
    warmup_ratio: float,
    max_warmup_steps: int | None = None,
    decay_norms_and_biases: bool,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """(AdamW, linear schedule): warmup over `warmup_ratio` of the steps (at most `max_warmup_steps`), then linear
    decay to zero. Without `decay_norms_and_biases`, biases and normalization weights get no weight decay (the
    teacher's fine-tuning, as Hugging Face's Trainer does it); the generator's decays every weight."""
    from transformers import (
        get_linear_schedule_with_warmup,
    )  # transformers loads in ~1.5 s: imported on use, so the CLI starts fast

    if decay_norms_and_biases:
        groups: list[dict[str, Any]] = [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    else:
        named = list(model.named_parameters())
        groups = [
            {"params": [p for n, p in named if not n.endswith(NORMS_AND_BIASES)], "weight_decay": weight_decay},
            {"params": [p for n, p in named if n.endswith(NORMS_AND_BIASES)], "weight_decay": 0.0},
        ]
    optimizer = torch.optim.AdamW(groups, lr=learning_rate)
    warmup = int(warmup_ratio * steps)
    if max_warmup_steps is not None:
        warmup = min(max_warmup_steps, warmup)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, steps)


def student_recipe(
    parameter_groups: list[dict[str, Any]], *, learning_rate: float, steps: int
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """(Adam, cosine schedule from `learning_rate` down to 5% of it over `steps`)."""
    optimizer = torch.optim.Adam(parameter_groups, lr=learning_rate)
    final = learning_rate * STUDENT_FINAL_LR_FRACTION
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=final)
