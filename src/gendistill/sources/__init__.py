"""Transfer sources: each is one module holding a `SourceConfig` subclass (its YAML fields and its `build`),
registered here by its `type`. Adding a source is a new module plus its class in the line below; the runner, the
CLI and the preflight find it through `SOURCES`."""

from __future__ import annotations

from typing import Any

from gendistill.registry import Registry, register_by_tag, tagged_union
from gendistill.sources.augment import AugmentSource
from gendistill.sources.base import SourceConfig, SourceContext, SourceSummary
from gendistill.sources.file import FileSource
from gendistill.sources.generate import GenerateSource
from gendistill.sources.llm import LLMSource
from gendistill.sources.retrieve import RetrieveSource

SOURCES: Registry[type[SourceConfig]] = Registry("transfer source type")
register_by_tag(SOURCES, "type", GenerateSource, FileSource, AugmentSource, LLMSource, RetrieveSource)


def source_union() -> Any:
    """The pydantic type of one `transfer.sources` entry: a union of the registered sources tagged by `type`."""
    return tagged_union(SOURCES, "type")


__all__ = ["SOURCES", "SourceConfig", "SourceContext", "SourceSummary", "source_union"]
