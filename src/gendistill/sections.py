"""The base of every config section and plugin config, and the one rule that decides what enters a cache key.

A field marked with `knob(...)` changes how fast or how a stage runs (batch sizes of inference, thread counts,
concurrency, timeouts) or whether it finishes (retries, a source's `min_yield`), never what a finished stage wrote:
it is left out of every stage key, so changing it reruns nothing.
Every other field of a section a stage depends on is part of that stage's key, except a field marked with
`added(...)` while it holds its default: a field added to a section after runs were made with it (a new option, off
by default) must not change the keys of those runs, or upgrading gendistill would rerun every stage of every
run dir. Set to anything else, it enters the key like any field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

KNOB = "knob"
ADDED = "added"


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=True, allow_inf_nan=False)


def knob(default: Any = ..., *, description: str | None = None, **constraints: Any) -> Any:
    """A `Field` that never enters a cache key (see the module docstring)."""
    return Field(default, description=description, json_schema_extra={KNOB: True}, **constraints)


def added(default: Any, *, description: str | None = None, **constraints: Any) -> Any:
    """A `Field` left out of the cache key while it holds `default` (see the module docstring)."""
    return Field(default, description=description, json_schema_extra={ADDED: True}, **constraints)


def is_knob(model: type[BaseModel], name: str) -> bool:
    extra = model.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(KNOB))


def _is_added_at_default(value: BaseModel, name: str) -> bool:
    field = type(value).model_fields[name]
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(ADDED)) and getattr(value, name) == field.default


def key_payload(value: Any) -> Any:
    """The JSON form of a section (recursively) without its knobs: what a stage key hashes."""
    if isinstance(value, BaseModel):
        cls = type(value)
        return {
            name: key_payload(getattr(value, name))
            for name in cls.model_fields
            if not is_knob(cls, name) and not _is_added_at_default(value, name)
        }
    if isinstance(value, (list, tuple)):
        return [key_payload(item) for item in value]
    if isinstance(value, dict):
        return {str(k): key_payload(v) for k, v in value.items()}
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):  # an Enum
        return value.value
    return value
