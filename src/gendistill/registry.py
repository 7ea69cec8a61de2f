"""A name -> plugin table: how the runner, the config and the CLI find stages, transfer sources, teachers and
student architectures without knowing any of them by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import Field

T = TypeVar("T")


class Registry(Generic[T]):
    """Plugins in registration order. `register(name)` is a decorator; registering a name twice is a bug."""

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise RuntimeError(f"{self.what} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r} (known: {', '.join(self._items)})") from None

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)


def tagged_union(registry: Registry[Any], tag: str) -> Any:
    """The pydantic type of "one of the registered config classes", told apart by their `tag` field (`type` for
    sources, `kind` for teachers); one registered class is that class itself."""
    members = tuple(registry)
    if len(members) == 1:
        return members[0]
    return Annotated[Union[members], Field(discriminator=tag)]  # noqa: UP007 - a union built at run time


def register_by_tag(registry: Registry[Any], tag: str, *classes: type) -> None:
    """Register config classes under the default value of their `tag` field (their YAML name)."""
    for cls in classes:
        registry.register(cls.model_fields[tag].default)(cls)
