"""Transfer sources: each is one module holding a `SourceConfig` subclass (its YAML fields and its `build`),
registered here by its `type`. Adding a source is a new module plus one line below; the runner, the CLI and the
preflight find it through `SOURCES`."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from gendistill.registry import Registry
from gendistill.sources.augment import AugmentSource
from gendistill.sources.base import SourceConfig, SourceContext, SourceSummary
from gendistill.sources.file import FileSource
from gendistill.sources.generate import GenerateSource

SOURCES: Registry[type[SourceConfig]] = Registry("transfer source type")
for _source in (GenerateSource, FileSource, AugmentSource):
    SOURCES.register(_source.model_fields["type"].default)(_source)


def source_union() -> Any:
    """The pydantic type of one `transfer.sources` entry: a union of the registered sources tagged by `type`."""
    members = tuple(SOURCES)
    if len(members) == 1:
        return members[0]
    return Annotated[Union[members], Field(discriminator="type")]  # noqa: UP007 - a runtime-built union


__all__ = ["SOURCES", "SourceConfig", "SourceContext", "SourceSummary", "source_union"]
