"""The deployment extras, each declared once: the optional packages it brings and the one-line hint that installs
them. The code that must import without them (the CLI, the exporter's torch side) loads what needs them here, on
first use."""

from __future__ import annotations

import importlib
from types import ModuleType

from gendistill.errors import MissingExtra

# extra -> (what it is for, the optional packages it brings)
EXTRAS = {
    "inference": ("running an ONNX export", ("onnxruntime",)),
    "export": ("exporting to ONNX", ("onnx", "onnxruntime")),
    "serve": ("serving an ONNX export", ("fastapi", "uvicorn", "onnxruntime")),
}


def load(module: str, extra: str) -> ModuleType:
    """`module` (a package of `extra`, or the gendistill module built on them); a missing package of the extra is
    one MissingExtra line with the pip command, any other missing module is raised as it is."""
    purpose, packages = EXTRAS[extra]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        package = (error.name or "").partition(".")[0]
        if package not in packages:
            raise
        raise MissingExtra(f"{purpose} needs {package}: pip install 'gendistill[{extra}]'") from None


def require(extra: str) -> None:
    """Fail now, with the install hint, unless every package of `extra` is installed."""
    for package in EXTRAS[extra][1]:
        load(package, extra)
