"""Optimizer steps from epochs and back: the one place every training loop (teacher, generator, student) and the
stages that size a budget for one turn one into the other."""

from __future__ import annotations

import math


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Batches in one pass over `examples` (the last one may be short)."""
    return math.ceil(examples / batch_size)


def steps_for_epochs(epochs: float, examples: int, batch_size: int) -> int:
    """Optimizer steps for `epochs` passes over `examples` (a fractional epoch rounds up; at least one step)."""
    return max(1, math.ceil(epochs * steps_per_epoch(examples, batch_size)))


def epochs_for_steps(steps: int, examples: int, batch_size: int) -> int:
    """Passes over `examples` that `steps` optimizer steps start (the last one may stop part-way; at least one)."""
    return max(1, math.ceil(steps / max(1, steps_per_epoch(examples, batch_size))))
