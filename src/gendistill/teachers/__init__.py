"""Teacher kinds, registered by their `kind` tag; the teacher, label, distill and evaluate stages reach a teacher
only through the `TeacherConfig` protocol (teachers/base.py)."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from gendistill.registry import Registry
from gendistill.teachers.base import FitContext, LoadedTeacher, TeacherConfig
from gendistill.teachers.hf_encoder import HFEncoderTeacher

DEFAULT_KIND = "hf_encoder"
TEACHERS: Registry[type[TeacherConfig]] = Registry("teacher kind")
for _teacher in (HFEncoderTeacher,):
    TEACHERS.register(_teacher.model_fields["kind"].default)(_teacher)


def teacher_union() -> Any:
    members = tuple(TEACHERS)
    if len(members) == 1:
        return members[0]
    return Annotated[Union[members], Field(discriminator="kind")]  # noqa: UP007 - a runtime-built union


__all__ = ["DEFAULT_KIND", "TEACHERS", "FitContext", "LoadedTeacher", "TeacherConfig", "teacher_union"]
