"""Training checkpoints: weights in safetensors, optimizer/scheduler state loaded with `weights_only=True`.

A loop saves after every epoch and, because each epoch reseeds its shuffling and dropout from (seed, epoch),
a run resumed from epoch k trains exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from gendistill.io import read_json, write_json


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    state: dict[str, Any],
    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
) -> None:
    """Write the checkpoint into a fresh folder, then swap it in: a kill leaves the old one or the new one."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(_untie(weights), str(tmp / "model.safetensors"))
    for name, tensors in (extra_tensors or {}).items():
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / f"{name}.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
    write_json(tmp / "state.json", state)
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def _untie(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage (tied embeddings): store independent copies."""
    seen: set[int] = set()
    out = {}
    for name, tensor in weights.items():
        pointer = tensor.untyped_storage().data_ptr()
        out[name] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return out


def load_checkpoint(directory: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any] | None:
    """Restore a checkpoint if one is complete; returns its state dict (epoch, step, ...) or None."""
    if directory.name.endswith((".tmp", ".old")):
        return None
    old = directory.with_name(directory.name + ".old")
    if not directory.exists() and old.exists():  # killed between the two renames
        old.rename(directory)
    if not (directory / "state.json").exists():
        return None
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=False)
    saved = torch.load(directory / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return read_json(directory / "state.json")


def load_extra(directory: Path, name: str) -> dict[str, torch.Tensor] | None:
    path = directory / f"{name}.safetensors"
    return load_file(str(path)) if path.exists() else None


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def kill_point(name: str) -> None:
    """Test seam for the crash-safety tests: GENDISTILL_KILL_AT=NAME:N[:INT] sends SIGKILL (or SIGINT) to this
    process the N-th time the point NAME is reached (e.g. 'transfer.shard:2'; 'label.shard:2@1' in rank 1 only).
    Inert unless that variable is set."""
    target = os.environ.get("GENDISTILL_KILL_AT")
    if not target:
        return
    target, _, rank = target.partition("@")  # NAME:N@R: only in the process of rank R (accelerate launch)
    if rank and os.environ.get("RANK", "0") != rank:
        return
    point, count, *how = target.split(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGINT if how == ["INT"] else signal.SIGKILL)


_counts: dict[str, int] = {}
