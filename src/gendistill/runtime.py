"""Devices, precision and the Accelerate handle every training loop runs through."""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from gendistill.errors import ConfigError


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was requested but no CUDA GPU is visible; use --device cpu or auto")
    return device


def resolve_precision(mixed_precision: str, device: str) -> str:
    """bf16 on GPUs that support it when 'auto'; full precision on CPU (CPU bf16 is slower than fp32 here)."""
    if mixed_precision != "auto":
        return mixed_precision if device == "cuda" else "no"
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def make_accelerator(
    device: str,
    mixed_precision: str,
    seed: int,
    report_to: list[str] | None = None,
    run_dir: str | Path | None = None,
) -> Accelerator:
    """An Accelerator honoring --device; under `accelerate launch` the launcher's settings take over. With
    `report_to`, it carries the experiment trackers every training loop reports to (training.tracking),
    logging under RUN_DIR/logs."""
    from accelerate.utils import ProjectConfiguration

    device = resolve_device(device)
    set_seed(seed)
    project = None
    if run_dir is not None:
        project = ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(Path(run_dir) / "logs"))
    # under `accelerate launch` on CPU, cpu=True is what selects the multi-process gloo backend
    return Accelerator(
        cpu=device == "cpu",
        mixed_precision=resolve_precision(mixed_precision, device),
        log_with=list(report_to) if report_to else None,
        project_config=project,
    )
