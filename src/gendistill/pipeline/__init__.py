"""The engine: the stage graph and its registry (graph), a run directory's paths (layout), what a stage body receives
(context), the preflight checks (preflight) and the runner (manifest, keys, skip/force/adopt/resume, lock).

The engine names no stage: stages register themselves in `graph.STAGES` when `gendistill.stages` is imported, which
the places that assemble a pipeline do (the package face's `gendistill.Run` / `gendistill.run`, the CLI, the
estimator). Submodules are imported by name; this face imports nothing, so `gendistill.pipeline.layout` (which the
torch-free artifacts resolver reads) stays light."""
