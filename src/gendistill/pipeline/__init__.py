"""The pipeline and its runner: the stage graph (graph), the run directory's paths (layout), what a stage body receives
(context), the preflight checks and the runner (manifest, keys, skip/force/adopt/resume, lock).

The engine modules name no stage: the stages register themselves when `gendistill.stages` is imported, and this
face does that the first time one of its names is reached. Importing a submodule alone runs nothing else, so
`gendistill.pipeline.layout` (a run directory's paths, which the torch-free artifacts resolver reads) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

STAGES_PACKAGE = "gendistill.stages"
_EXPORTS = {
    "STAGES": "gendistill.pipeline.graph",
    "Stage": "gendistill.pipeline.graph",
    "pipeline": "gendistill.pipeline.graph",
    "register": "gendistill.pipeline.graph",
    "RunLayout": "gendistill.pipeline.layout",
    "Run": "gendistill.pipeline.runner",
    "force_choices": "gendistill.pipeline.runner",
    "run": "gendistill.pipeline.runner",
    "run_dir_for": "gendistill.pipeline.runner",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gendistill.pipeline' has no attribute {name!r}")
    importlib.import_module(STAGES_PACKAGE)  # registers the built-in stages, in pipeline order
    return getattr(importlib.import_module(_EXPORTS[name]), name)
