"""Stage `transfer`: build the transfer set, one folder of Parquet shards per configured source, every text through
one shared filter (so a text kept by an earlier source is a duplicate for a later one)."""

from __future__ import annotations

from typing import Any

from gendistill import progress
from gendistill.config import RunConfig
from gendistill.errors import YieldError
from gendistill.io import remove_path, write_json
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, register
from gendistill.sources.base import SourceContext, TextFilter, normalize, source_dir


def run_transfer(ctx: StageContext) -> dict[str, Any]:
    """Runs on every process: sources marked `parallel` split their shards over the processes; the others run on
    the main process while the rest wait. Only the main process's filter and summary count.

    A source that stops for its yield (`min_yield`) stops the stage on every process with its one line; sources
    that together kept no text at all stop it too, with one line naming them, rather than leaving the label and
    distill stages an empty set to fail on."""
    task = ctx.task()
    root = ctx.layout.transfer
    sources = ctx.config.transfer.sources
    expected = {source_dir(root, i, source).name for i, source in enumerate(sources)}
    if ctx.is_main and root.exists():  # sources removed from the config leave nothing behind
        for child in root.iterdir():
            if child.name not in expected:
                remove_path(child)
    text_filter = TextFilter(ctx.config.transfer.filters, {normalize(t) for t in task.train.texts})
    summaries = []
    for index, source in enumerate(sources):
        directory = source_dir(root, index, source)
        directory.mkdir(parents=True, exist_ok=True)
        source_ctx = SourceContext(ctx.config, ctx.layout, task, index, directory, text_filter, ctx.device, ctx)
        stopped = None
        try:
            summary = source.build(source_ctx) if source.parallel or ctx.is_main else None
        except YieldError as error:
            if source.parallel:  # every process stops together (fill_shards shares the decision)
                raise
            stopped, summary = str(error), None
        ctx.barrier()
        stopped = ctx.broadcast(stopped)
        if stopped is not None:
            raise YieldError(stopped)
        if summary is not None and ctx.is_main:
            summaries.append(summary.to_dict())
            if summary.note:
                progress.warning(f"{source.where(index)}: {summary.note}")
    result = {"sources": summaries, "kept": sum(s["kept"] for s in summaries)}
    empty = _empty_set(ctx.config, summaries) if ctx.is_main else None
    empty = ctx.broadcast(empty)
    if empty is not None:
        raise YieldError(empty)
    if ctx.is_main:
        write_json(ctx.layout.transfer_summary, result)
    return result


def _empty_set(config: RunConfig, summaries: list[dict[str, Any]]) -> str | None:
    """The one line for a transfer set that holds no text although sources were configured (None otherwise)."""
    if not summaries or any(summary["kept"] for summary in summaries):
        return None
    parts = []
    for index, (source, summary) in enumerate(zip(config.transfer.sources, summaries, strict=True)):
        drops = ", ".join(f"{name} {count:,}" for name, count in summary["drops"].items() if count) or "no drops"
        parts.append(f"{source.where(index)} kept 0 of {summary['generated']:,} ({drops})")
    return (
        f"the transfer set is empty: {'; '.join(parts)}; nothing to label or distill. Check each source's input "
        "(path, column, prompt, model) and loosen transfer.filters (min_words, max_words)"
    )


def _inputs(config: RunConfig) -> list[str]:
    return [spec for source in config.transfer.sources for spec in source.inputs(config)]


def transfer_key(config: RunConfig) -> dict[str, Any]:
    """The transfer section and seed, plus what a source depends on outside its own fields (only when some source
    does, so the keys of runs without such a source stay as they were)."""
    key: dict[str, Any] = {"transfer": config.transfer, "seed": config.seed}
    outside = {
        str(index): fields
        for index, source in enumerate(config.transfer.sources)
        if (fields := source.key_fields(config))
    }
    if outside:
        key["sources_outside_fields"] = outside
    return key


def _check(config: RunConfig) -> None:
    for index, source in enumerate(config.transfer.sources):
        source.check(config, index)


STAGE = register(
    Stage(
        name="transfer",
        body=run_transfer,
        upstream=("data", "generator"),
        key_fields=transfer_key,
        inputs=_inputs,
        check=_check,
        outputs=lambda layout: (layout.transfer,),
        processes="all",
        help="Build the transfer set from every source (sample the generator, read files, augment).",
    )
)
