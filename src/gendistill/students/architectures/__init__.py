"""Student architectures, registered by name (`student.arch`). Each is one module holding its `StudentNetwork`
subclass and, if it has fields of its own, its `StudentSpec` subclass; adding one is a new module plus its line
below, or `ARCHITECTURES.register(name)(cls)` from outside the package."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from gendistill.registry import Registry
from gendistill.students.architectures.bag import BagStudent
from gendistill.students.architectures.base import StudentNetwork, StudentSpec
from gendistill.students.architectures.bilstm import BiLSTMStudent
from gendistill.students.architectures.cnn import CNNStudent

ARCHITECTURES: Registry[type[StudentNetwork]] = Registry("student architecture")
ARCHITECTURES.register("bilstm")(BiLSTMStudent)
ARCHITECTURES.register("cnn")(CNNStudent)
ARCHITECTURES.register("bag")(BagStudent)


def build_network(spec: StudentSpec) -> StudentNetwork:
    return ARCHITECTURES.get(spec.arch)(spec)


def spec_from_dict(values: dict[str, Any]) -> StudentSpec:
    """The spec saved as `values` (config.json's `spec`). Folders saved before specs were per architecture hold
    every architecture's fields: those another architecture owns are dropped; any other unknown field is a
    TypeError."""
    spec_class = ARCHITECTURES.get(values["arch"]).spec_class
    own = {item.name for item in fields(spec_class)}
    known = {item.name for network in ARCHITECTURES for item in fields(network.spec_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"unknown student spec field(s) {', '.join(unknown)}")
    return spec_class(**{name: value for name, value in values.items() if name in own})


__all__ = ["ARCHITECTURES", "StudentNetwork", "StudentSpec", "build_network", "spec_from_dict"]
