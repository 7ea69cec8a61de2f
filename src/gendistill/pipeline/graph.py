"""A stage of the pipeline as a registered object: its name, what it depends on, what it writes, and its body.

The runner (pipeline/runner.py) knows stages only through this record; each stage module in `gendistill.stages`
builds one and registers it. A stage's cache key hashes `key_fields(config)` (the config values its output depends
on, knobs excluded), the content of the user files `inputs(config)` names, `derived(records)` (values read from
earlier stages' records, e.g. a step budget) and its upstream stages' keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gendistill.registry import Registry

if TYPE_CHECKING:
    from gendistill.config import RunConfig
    from gendistill.pipeline.context import StageContext
    from gendistill.pipeline.layout import RunLayout


def _nothing(_: RunConfig) -> list[str]:
    return []


def _always(_: RunConfig) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    name: str
    body: Callable[[StageContext], dict[str, Any] | None]
    upstream: tuple[str, ...] = ()
    key_fields: Callable[[RunConfig], Any] = field(default=lambda _: None)
    outputs: Callable[[RunLayout], tuple[Any, ...]] = field(default=lambda _: ())
    inputs: Callable[[RunConfig], list[str]] = _nothing
    check: Callable[[RunConfig], None] | None = None  # preflight of what this stage will read
    check_always: bool = False  # preflight it even when it will not run (the data: every stage reads it)
    applies: Callable[[RunConfig], bool] = _always  # False: not part of this run (e.g. no source needs an LM)
    derived: Callable[[dict[str, dict[str, Any]]], Any] | None = None
    # under `accelerate launch`: "main" runs the body on the main process only; "all" on every process (training
    # with DDP, or work the body splits over ctx.rank / ctx.world itself)
    processes: str = "main"
    command: str | None = None  # CLI command that reruns it alone (default: the stage name)
    has_command: bool = True
    help: str = ""

    @property
    def cli_name(self) -> str:
        return self.command or self.name

    def command_line(self, layout: RunLayout) -> str:
        """The CLI command that runs this stage in `layout`'s run directory: its own command, or `run` on the
        run's saved config for a stage without one (the data stage), so a hint never names a command that does not
        exist."""
        if self.has_command:
            return f"gendistill {self.cli_name} {layout.root}"
        return f"gendistill run {layout.config} --run-dir {layout.root}"


STAGES: Registry[Stage] = Registry("stage")


def register(stage: Stage) -> Stage:
    missing = [name for name in stage.upstream if name not in STAGES]
    if missing:  # registration order is pipeline order: a stage may only depend on earlier ones
        raise RuntimeError(f"stage {stage.name!r} depends on {missing}, which are not registered before it")
    return STAGES.register(stage.name)(stage)


def pipeline() -> list[Stage]:
    """Every registered stage in pipeline order. Importing gendistill.stages registers them (`gendistill.Run`,
    `gendistill.run`, the CLI and the estimator do); the engine itself names no stage."""
    if not STAGES:
        raise RuntimeError(
            "no stage is registered: import gendistill.stages first, or use gendistill.Run / gendistill.run"
        )
    return list(STAGES)


def downstream(names: set[str]) -> set[str]:
    """`names` and every stage that depends on one of them, directly or not."""
    out = set(names)
    for stage in pipeline():
        if any(name in out for name in stage.upstream):
            out.add(stage.name)
    return out
