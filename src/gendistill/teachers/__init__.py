"""Teacher kinds, registered by their `kind` tag; the teacher, label, distill and evaluate stages reach a teacher
only through the `TeacherConfig` protocol (teachers/base.py)."""

from __future__ import annotations

from typing import Any

from gendistill.registry import Registry, register_by_tag, tagged_union
from gendistill.teachers.auto import AutoTeacher
from gendistill.teachers.base import FitContext, LoadedTeacher, TeacherConfig
from gendistill.teachers.hf_encoder import HFEncoderTeacher
from gendistill.teachers.llm import LLMTeacher
from gendistill.teachers.setfit import SetFitTeacher

DEFAULT_KIND = "hf_encoder"
TEACHERS: Registry[type[TeacherConfig]] = Registry("teacher kind")
register_by_tag(TEACHERS, "kind", HFEncoderTeacher, LLMTeacher, SetFitTeacher, AutoTeacher)


def teacher_union() -> Any:
    return tagged_union(TEACHERS, "kind")


__all__ = ["DEFAULT_KIND", "TEACHERS", "FitContext", "LoadedTeacher", "TeacherConfig", "teacher_union"]
