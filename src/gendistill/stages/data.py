"""Stage `data`: load and validate the labeled splits, draw the low-data sample, write them as the run uses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gendistill import progress
from gendistill.config import RunConfig
from gendistill.data.stored import write_task
from gendistill.data.task import load_task_from_config
from gendistill.errors import ConfigError
from gendistill.io import write_json
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register

SPLITS = ("train", "test", "validation")


def run_data(ctx: StageContext) -> dict[str, Any]:
    task = load_task_from_config(ctx.config.data)
    write_task(ctx.layout, task)
    stats = {
        "label_names": task.label_names,
        "train": len(task.train),
        "pool": task.pool_size,
        "test": len(task.test) if task.test else 0,
        "validation": len(task.validation) if task.validation else 0,
        "truncated": task.train.truncated + sum(s.truncated for s in (task.test, task.validation) if s),
        "notes": task.notes,
    }
    if task.multi_label:
        stats["multi_label"] = True
    write_json(ctx.layout.data_stats, stats)
    for note in task.notes:
        progress.warning(note)
    return stats


def data_inputs(config: RunConfig) -> list[str]:
    data = config.data
    specs = [spec for spec in (data.train, data.test, data.validation) if spec]
    if isinstance(data.label_names, str):
        specs.append(data.label_names)
    elif data.label_names is None and data.train is not None and not data.train.startswith("hf:"):
        labels_json = Path(data.train).with_name("labels.json")
        if labels_json.exists():
            specs.append(str(labels_json))
    return specs


def check_data(config: RunConfig) -> None:
    """The data load, that the teacher can fit on the labeled set, and in a zero-label start, that every plugin
    can do without labeled texts."""
    task = load_task_from_config(config.data)
    if task.multi_label:
        check_multi_label_plugins(config, len(task.label_names))
        config.teacher.check_multi_label(task.label_names)
    if not config.data.zero_label:
        config.teacher.check_labeled(task.train, task.label_names)
        return
    hint = "give data.train, or use plugins that need no labeled texts (sources llm and file, teacher kind llm)"
    if config.teacher.needs_labeled_texts:
        raise ConfigError(
            f"teacher.kind {config.teacher.kind!r} trains on labeled texts, and data.train is not set (a zero-label "
            f"start); {hint}"
        )
    for index, source in enumerate(config.transfer.sources):
        if source.needs_labeled_texts:
            raise ConfigError(
                f"{source.where(index)} works from labeled texts, and data.train is not set (a zero-label start); "
                f"{hint}"
            )
    if not config.transfer.sources:
        raise ConfigError(
            "data.train is not set (a zero-label start) and transfer.sources is empty: nothing to distill; add an "
            "llm source"
        )


def check_multi_label_plugins(config: RunConfig, labels: int) -> None:
    """A multi-label task (each text any number of labels) runs only through plugins that answer per label; every
    other one is refused here, naming it, before anything trains (a softmax teacher would silently force one
    label per text)."""
    where = f"data: {config.data.train} is multi-label ({labels} labels, a list of labels per row)"
    if not type(config.teacher).supports_multi_label:
        raise ConfigError(
            f"{where}, and teacher.kind {config.teacher.kind!r} gives one label per text; use teacher.kind hf_encoder "
            "or setfit (independent sigmoid outputs), or llm (asked for every label that applies)"
        )
    refused = {
        "rounds.count": config.rounds.count > 0,
        "label.rebalance": config.label.rebalance is not None,
        "label.drop_uncertain": config.label.drop_uncertain > 0,
        "generator.conditional": config.generator.conditional and config.uses_generator(),
    }
    for key, used in refused.items():
        if used:
            raise ConfigError(f"{where}, and {key} works on one label per text; unset it for this task")
    for index, source in enumerate(config.transfer.sources):
        if not source.supports_multi_label:
            raise ConfigError(
                f"{where}, and {source.where(index)} picks texts per single class; use a file, generate, augment or "
                "llm source for this task"
            )


STAGE = register(
    Stage(
        name="data",
        body=run_data,
        key_fields=lambda config: {"data": config.data},
        inputs=data_inputs,
        outputs=lambda layout: (layout.data,),
        check=check_data,
        check_always=True,
        has_command=False,  # `run` always checks and, when changed, reloads the data
        help="Load, validate and sample the labeled data.",
    )
)
