"""gendistill: generation-distillation of a large fine-tuned classifier into a tiny, fast student.

    import gendistill
    config = gendistill.load_config("examples/quickstart.yaml")
    report = gendistill.run(config, "runs/quickstart")        # a typed Report: report.student.accuracy
    student = gendistill.StudentClassifier.from_pretrained("runs/quickstart/student")   # or a Hub id: "user/name"
    student.predict(["a new text"])

    clf = gendistill.GenDistillClassifier(teacher="MODEL_ID_OR_DIR").fit(texts, labels, eval=(test_texts, test_labels))
    clf.predict(["a new text"]); clf.push_to_hub("user/name")

    predictor = gendistill.Predictor("runs/quickstart/export/onnx")  # an ONNX export, torch-free: gendistill[inference]

Exports are imported lazily so that `Predictor` (gendistill.artifacts.inference, formerly gendistill.inference) never
pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GendistillError": "gendistill.errors",
    "RunConfig": "gendistill.config",
    "load_config": "gendistill.config",
    "Report": "gendistill.evaluation.report",
    "Run": "gendistill.pipeline.runner",
    "run": "gendistill.pipeline.runner",
    "StudentClassifier": "gendistill.students.classifier",
    "GenDistillClassifier": "gendistill.api",
    "Predictor": "gendistill.artifacts.inference",
}
__all__ = [*_EXPORTS, "__version__"]


# the face assembles the pipeline: a runner reached from here has the built-in stages registered (the engine itself
# names no stage)
_NEEDS_STAGES = {"Run", "run"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        if name in _NEEDS_STAGES:
            importlib.import_module("gendistill.stages")
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gendistill' has no attribute {name!r}")
