"""Check everything a run will read before any expensive work starts, so a typo fails in seconds, not after an
hour of teacher training. Each stage brings its own check (Stage.check); the stages about to run are checked, and
those marked `check_always` (the data, which every stage reads) in any case."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gendistill.pipeline.graph import pipeline
from gendistill.training.tracking import check_trackers

if TYPE_CHECKING:
    from gendistill.config import RunConfig


def preflight(config: RunConfig, stages: set[str]) -> None:
    if config.report_to:  # Accelerate would only warn about a tracker that is not installed, and log nothing
        check_trackers(config.report_to)
    for stage in pipeline():
        if stage.check is not None and (stage.name in stages or stage.check_always) and stage.applies(config):
            stage.check(config)
