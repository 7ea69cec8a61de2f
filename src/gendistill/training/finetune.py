"""Fine-tune a pretrained transformers model (the teacher, the generator): the transformer recipe in the one training
loop, then `save_pretrained` into the stage's folder atomically. One function, so both models train and land the
same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator

from gendistill.training.loop import LoopResult, fit, save_pretrained_atomic
from gendistill.training.recipes import transformer_recipe

if TYPE_CHECKING:
    from gendistill.data.task import LabeledSet


@dataclass
class FitContext:
    """What fitting a model on the labeled set may use (a teacher of any kind, the generator): the labeled set,
    where to write, the training runtime."""

    train: LabeledSet
    label_names: list[str]
    out_dir: Path
    checkpoint_dir: Path
    accelerator: Accelerator
    seed: int
    label_descriptions: dict[str, str] = field(default_factory=dict)  # data.label_descriptions (for LLM prompts)
    multi_label: bool = False  # train.labels holds a list of class ids per text


def fine_tune(
    ctx: FitContext,
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    name: str,
    examples: Sequence[Any],
    collate: Callable[[list[Any]], dict[str, torch.Tensor]],
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], Any],
    batch_size: int,
    steps: int,
    recipe: dict[str, Any],
    hparams: dict[str, Any],
) -> LoopResult:
    """Train `model` for `steps` with `transformer_recipe(model, steps=steps, **recipe)` (learning rate, warmup,
    weight decay: the caller's), log and checkpoint as `name`, and save model and tokenizer to `ctx.out_dir`."""
    optimizer, scheduler = transformer_recipe(model, steps=steps, **recipe)
    model, result = fit(
        accelerator=ctx.accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        examples=examples,
        batch_size=batch_size,
        collate=collate,
        loss_fn=loss_fn,
        steps=steps,
        seed=ctx.seed,
        description=f"{name}: fine-tune",
        name=name,
        checkpoint_dir=ctx.checkpoint_dir,
        hparams=hparams,
    )
    save_pretrained_atomic(ctx.accelerator, model, tokenizer, ctx.out_dir)
    return result
