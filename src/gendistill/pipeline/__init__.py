"""The pipeline and its runner: the stage graph (graph), the run directory's paths (layout), what a stage body receives
(context), the preflight checks and the runner (manifest, keys, skip/force/adopt/resume, lock)."""

from gendistill.pipeline.graph import STAGES, Stage, pipeline, register
from gendistill.pipeline.layout import RunLayout
from gendistill.pipeline.runner import Run, force_choices, run, run_dir_for

__all__ = ["STAGES", "Run", "RunLayout", "Stage", "force_choices", "pipeline", "register", "run", "run_dir_for"]
