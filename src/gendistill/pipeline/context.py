"""What a stage body receives: the config, the run directory's paths, the finished stages' records, the training
runtime (Accelerate) and the task as the data stage wrote it. Bodies read upstream outputs from the run directory
only, so any stage can be rerun alone."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelerate.utils import broadcast_object_list, gather_object

from gendistill.data.stored import read_task
from gendistill.training.finetune import FitContext

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from gendistill.config import RunConfig
    from gendistill.data.task import TaskData
    from gendistill.pipeline.layout import RunLayout


@dataclass
class StageContext:
    stage: str  # the stage this context runs (names its checkpoint folder)
    config: RunConfig
    layout: RunLayout
    records: dict[str, dict[str, Any]]  # the manifest's stage records (this stage's is 'running')
    invocation: str  # id of this `run` call: records carrying it ran now, the others were reused
    runtime: Any  # the runner: provides `accelerator` and `is_main` lazily
    started: float = field(default_factory=time.perf_counter)

    @property
    def accelerator(self) -> Accelerator:
        return self.runtime.accelerator

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.runtime.is_main

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.world > 1 else 0

    @property
    def world(self) -> int:
        """Processes running this stage's body (1 unless under `accelerate launch` and processes="all")."""
        return int(os.environ.get("WORLD_SIZE", "1"))

    def barrier(self) -> None:
        if self.world > 1:
            self.accelerator.wait_for_everyone()

    def broadcast(self, value: Any) -> Any:
        """The main process's `value`, on every process."""
        if self.world == 1:
            return value
        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value`, in rank order, on every process."""
        if self.world == 1:
            return [value]
        return gather_object([value])

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def task(self) -> TaskData:
        return read_task(self.layout)

    def fit_context(self, out_dir: Path) -> FitContext:
        """What a model fitted on the labeled set (a teacher, the generator) gets: the task's training split, this
        stage's folder to write and its checkpoint folder, the runtime and the seed."""
        task = self.task()
        return FitContext(
            train=task.train,
            label_names=task.label_names,
            out_dir=out_dir,
            checkpoint_dir=self.layout.checkpoints(self.stage),
            accelerator=self.accelerator,
            seed=self.config.seed,
            label_descriptions=dict(self.config.data.label_descriptions or {}),
            multi_label=task.multi_label,
        )
