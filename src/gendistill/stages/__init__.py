"""The stages of generation-distillation, one module each. Importing this package registers them, in the order
below, in gendistill.pipeline.graph.STAGES; that order is the pipeline's (a stage comes after its upstream):

data -> teacher -------------------------------------> label -> distill -> rounds (if any) -> baseline -> evaluate
     -> generator (if a source needs it) -> transfer ->

A new stage is a new module here plus its name in ORDER; the runner and the CLI find it in the registry.
"""

import importlib

ORDER = ("data", "teacher", "generator", "transfer", "label", "distill", "rounds", "baseline", "evaluate")

for _name in ORDER:
    importlib.import_module(f"gendistill.stages.{_name}")
