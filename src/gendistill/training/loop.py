"""The one training loop behind teacher, generator and student: Accelerate, per-epoch checkpoints, exact resume.

Each epoch builds its DataLoader with a generator seeded from (seed, epoch) and reseeds torch (dropout), so a run
resumed from the checkpoint of epoch k makes exactly the same updates as the uninterrupted run. Every loop reports to
the run's experiment trackers (`report_to`, training.tracking) and prints a line per epoch when no bar is
shown.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from gendistill import progress
from gendistill.errors import GendistillError
from gendistill.training import tracking
from gendistill.training.budget import epochs_for_steps
from gendistill.training.checkpoint import epoch_seed, kill_point, load_checkpoint, save_checkpoint


class TrainingDiverged(GendistillError):
    """The loss became NaN or infinite: a one-line error naming the loop and the step, never a NaN model."""


class StopTraining(Exception):
    """Raised by an `evaluate` callback, with the metric it measured, to end training after this epoch (early
    stopping); the loop keeps the epoch's record and returns normally."""

    def __init__(self, metric: float):
        super().__init__(metric)
        self.metric = metric


@dataclass
class LoopResult:
    steps: int
    epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    resumed_from_epoch: int | None = None


def fit(
    *,
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    examples: Sequence[Any],
    batch_size: int,
    collate: Callable[[list[Any]], dict[str, torch.Tensor]],
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], Any],
    steps: int,
    seed: int,
    description: str,
    name: str = "train",
    checkpoint_dir: Path | None = None,
    max_grad_norm: float = 1.0,
    evaluate: Callable[[torch.nn.Module], float] | None = None,
    metric_name: str = "accuracy",
    checkpoint_every_s: float | None = None,
    hparams: dict[str, Any] | None = None,
) -> tuple[torch.nn.Module, LoopResult]:
    """Train for `steps` optimizer steps; returns the unwrapped model (the best epoch's weights when `evaluate`
    is given: higher is better, measured on validation data, never on the test set).

    Under `accelerate launch`, every process draws the same seeded batches and trains on its own slice of each
    (rows rank, rank + N, ...); `loss_fn` returns (loss summed over its rows, the count of examples or tokens it
    sums) and the loop divides by the count over all processes, so N processes take exactly the steps one would.
    (Accelerate's prepared DataLoader would instead pad a short last batch with repeated examples.) A plain mean
    is accepted too (exact on one process).

    Checkpoints are written at the end of an epoch when `checkpoint_every_s` (default: $GENDISTILL_CHECKPOINT_SECONDS
    or 30) have passed since the last one, so many tiny epochs do not spend their time writing files.

    With experiment trackers configured on the accelerator (`report_to`), the loop opens a tracker run named `name`
    (with `hparams`), logs `train/loss` and `train/learning_rate` per step and `train/epoch_loss` (and
    `validation/accuracy`) per epoch, and closes it at the end."""
    if checkpoint_every_s is None:
        checkpoint_every_s = float(os.environ.get("GENDISTILL_CHECKPOINT_SECONDS", "30"))
    last_save = time.monotonic()
    # the scheduler is stepped here once per optimizer step; prepared, Accelerate would step it once per process
    model, optimizer = accelerator.prepare(model, optimizer)
    epochs = epochs_for_steps(steps, len(examples), batch_size)
    result = LoopResult(steps=0, epochs=0)
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch = 0
    if checkpoint_dir is not None:
        restored = load_checkpoint(checkpoint_dir, accelerator.unwrap_model(model), optimizer, scheduler, description)
        if restored is not None:
            state, extras = restored
            start_epoch, result.steps, result.history = state["epoch"], state["step"], state["history"]
            result.best_metric, result.resumed_from_epoch = state.get("best_metric"), state["epoch"]
            best_state = extras.get("best")
            progress.log(f"{description}: resumed after epoch {start_epoch}")
    with (
        tracking.run(accelerator, name, hparams),
        progress.bar(description, total=steps, completed=result.steps) as bar,
    ):
        for epoch in range(start_epoch, epochs):
            if result.steps >= steps:
                break
            torch.manual_seed(epoch_seed(seed, epoch))
            loader = DataLoader(
                examples,  # type: ignore[arg-type] - any index-addressable store (a list, an ExampleStore)
                batch_size=batch_size,
                shuffle=True,
                collate_fn=list,
                generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)),
            )
            model.train()
            total, count = 0.0, 0
            for rows in loader:
                mine = rows[accelerator.process_index :: accelerator.num_processes]
                # a process left without rows (a last batch smaller than the process count) still joins the
                # gradient all-reduce, with one row at weight zero
                batch = _to_device(collate(mine or rows[:1]), accelerator.device)
                output = loss_fn(model, batch)
                if not mine:
                    output = (output[0] * 0, 0) if isinstance(output, tuple) else output * 0
                loss, local_mean = _batch_mean(accelerator, output)
                if not torch.isfinite(local_mean).all():
                    raise TrainingDiverged(
                        f"{description}: the loss became {local_mean.item()} at step {result.steps + 1}; the training "
                        "diverged: lower the learning rate (or check the inputs for extreme values)"
                    )
                accelerator.backward(loss)
                if max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                learning_rate = optimizer.param_groups[0]["lr"]  # the rate this step used, before the scheduler moves
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step_loss = local_mean.item()
                total, count, result.steps = total + step_loss, count + 1, result.steps + 1
                tracking.log(accelerator, {"train/loss": step_loss, "train/learning_rate": learning_rate}, result.steps)
                bar.advance()
                if result.steps >= steps:
                    break
            record: dict[str, Any] = {"epoch": epoch + 1, "loss": total / max(count, 1)}
            stopping = False
            if evaluate is not None:
                model.eval()
                try:
                    record["validation"] = evaluate(accelerator.unwrap_model(model))
                except StopTraining as stop:
                    record["validation"], stopping = stop.metric, True
                if result.best_metric is None or record["validation"] > result.best_metric:
                    result.best_metric = record["validation"]
                    best_state = copy.deepcopy(
                        {k: v.detach().cpu() for k, v in accelerator.unwrap_model(model).state_dict().items()}
                    )
            result.history.append(record)
            validation = f", validation {metric_name} {record['validation']:.4f}" if "validation" in record else ""
            progress.step(f"{description}: epoch {epoch + 1}/{epochs} done, loss {record['loss']:.4f}{validation}")
            tracking.log(
                accelerator,
                {
                    "train/epoch": epoch + 1,
                    "train/epoch_loss": record["loss"],
                    **({"validation/accuracy": record["validation"]} if "validation" in record else {}),
                },
                result.steps,
            )
            due = time.monotonic() - last_save >= checkpoint_every_s
            if checkpoint_dir is not None and accelerator.is_main_process and due and result.steps < steps:
                last_save = time.monotonic()
                save_checkpoint(
                    checkpoint_dir,
                    accelerator.unwrap_model(model),
                    optimizer,
                    scheduler,
                    {
                        "epoch": epoch + 1,
                        "step": result.steps,
                        "history": result.history,
                        "best_metric": result.best_metric,
                    },
                    {"best": best_state} if best_state is not None else None,
                )
            kill_point(f"{name}.epoch")
            if stopping:
                break
    accelerator.wait_for_everyone()
    result.epochs = len(result.history)
    unwrapped = accelerator.unwrap_model(model)
    if best_state is not None:
        unwrapped.load_state_dict(best_state)
    unwrapped.eval()
    return unwrapped, result


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


def _batch_mean(accelerator: Accelerator, output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to backpropagate, this process's mean for logging) from a loss_fn's output. DDP averages the
    gradients of the processes, so each backpropagates sum * processes / global count: the mean over the batch."""
    if not isinstance(output, tuple):
        return output, output.detach()
    loss_sum, count = output
    count = torch.as_tensor(count, dtype=torch.float32, device=loss_sum.device)
    local_mean = loss_sum.detach() / count.clamp(min=1)
    if accelerator.num_processes == 1:
        return loss_sum / count.clamp(min=1), local_mean
    total = accelerator.reduce(count.detach().clone(), reduction="sum")
    return loss_sum * accelerator.num_processes / total.clamp(min=1), local_mean


def save_pretrained_atomic(accelerator: Accelerator, model: Any, tokenizer: Any, out_dir: Path) -> None:
    """`save_pretrained` model and tokenizer into a temporary folder, then swap it in (main process only)."""
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
