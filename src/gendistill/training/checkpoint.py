"""Training checkpoints: weights in safetensors, optimizer/scheduler state loaded with `weights_only=True`.

A loop saves after every epoch and, because each epoch reseeds its shuffling and dropout from (seed, epoch),
a run resumed from epoch k trains exactly as the uninterrupted run would have.

state.json, written last, records the sha256 of every other file of the checkpoint. A checkpoint damaged after it
was written (a truncated or edited file, a malformed state.json, a file gone) is found before anything is restored
and discarded with one warning: the loop restarts from its last good state, which, one checkpoint being kept, is
its start. So a damaged checkpoint costs time, never a traceback or a half-restored model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from gendistill import progress
from gendistill.io import file_sha256, write_json

STATE_FILE, WEIGHTS_FILE, OPTIMIZER_FILE = "state.json", "model.safetensors", "optimizer.pt"


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
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / OPTIMIZER_FILE)
    checksums = {path.name: file_sha256(path) for path in sorted(tmp.iterdir())}
    write_json(tmp / STATE_FILE, {**state, "sha256": checksums})
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


def load_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, description: str = "training"
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]] | None:
    """Restore a complete, intact checkpoint: returns its state (epoch, step, ...) and its extra tensors by name
    ({"best": ...}), or None when there is none to resume from. Every file is checked and read before the model,
    optimizer or scheduler is touched, so a damaged checkpoint (one warning naming the file) leaves them as they
    were: the loop starts over from there."""
    if directory.name.endswith((".tmp", ".old")):
        return None
    old = directory.with_name(directory.name + ".old")
    if not directory.exists() and old.exists():  # killed between the two renames
        old.rename(directory)
    if not directory.exists():
        return None
    try:
        state, weights, saved, extras = _read_checkpoint(directory)
    except DamagedCheckpoint as damage:
        progress.warning(
            f"checkpoint {damage.path} is damaged ({damage.why}): {description} restarts from its last good state, "
            "the start of its training"
        )
        return None
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return state, extras


class DamagedCheckpoint(Exception):
    """A checkpoint file that is missing, unreadable, malformed or not the one its state.json recorded."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")
        self.path, self.why = path, why


def _read_checkpoint(
    directory: Path,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """(state, model weights, optimizer and scheduler state, extra tensors), each file checked against the checksum
    state.json records (a checkpoint written before checksums existed is only read), or DamagedCheckpoint."""
    state_path = directory / STATE_FILE
    if not state_path.exists():
        raise DamagedCheckpoint(state_path, "the file is missing")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DamagedCheckpoint(state_path, f"not valid JSON: {str(error)[:80]}") from None
    if not (
        isinstance(state, dict)
        and isinstance(state.get("epoch"), int)
        and isinstance(state.get("step"), int)
        and isinstance(state.get("history"), list)
        and isinstance(state.get("sha256", {}), dict)
    ):
        raise DamagedCheckpoint(state_path, "not a checkpoint state (epoch, step, history)")
    checksums: dict[str, Any] = state.pop("sha256", {})
    names = set(checksums) | {WEIGHTS_FILE, OPTIMIZER_FILE}
    for name in sorted(names):
        path = directory / name
        if not path.is_file():
            raise DamagedCheckpoint(path, "the file is missing")
        if name in checksums and file_sha256(path) != checksums[name]:
            raise DamagedCheckpoint(path, "its sha256 differs from the one state.json recorded")
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for path in sorted(directory.glob("*.safetensors")):
        try:
            tensors[path.stem] = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error type
            raise DamagedCheckpoint(path, f"{type(error).__name__}: {str(error)[:80]}") from None
    weights = tensors.pop(Path(WEIGHTS_FILE).stem)
    optimizer_path = directory / OPTIMIZER_FILE
    try:
        saved = torch.load(optimizer_path, weights_only=True)
        if not isinstance(saved, dict) or not {"optimizer", "scheduler"} <= set(saved):
            raise ValueError("not an optimizer and scheduler state")
    except Exception as error:  # noqa: BLE001 - torch.load raises pickle, zip and runtime errors alike
        raise DamagedCheckpoint(optimizer_path, f"{type(error).__name__}: {str(error)[:80]}") from None
    return state, weights, saved, tensors


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
