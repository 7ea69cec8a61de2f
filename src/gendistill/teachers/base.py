"""The teacher protocol: what the pipeline asks of any teacher kind (a fine-tuned encoder today; a served LLM is
the next kind). A kind is a `TeacherConfig` subclass with `kind: Literal["name"]`, registered in
`gendistill.teachers`; the stages call only the methods below."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol

from pydantic import Field

from gendistill.sections import Section, knob
from gendistill.training.finetune import FitContext

if TYPE_CHECKING:
    import numpy as np
    import torch

    from gendistill.data.task import LabeledSet


class LoadedTeacher(Protocol):
    def logits(self, texts: list[str], batch_size: int) -> np.ndarray:
        """[len(texts), labels] float32 scores in input order (soft targets for the student)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Report fields: params and size_bytes (None where they do not apply); a teacher that measures its own
        speed (a served LLM) may give examples_per_s, and `notes` (a list of strings) for the report."""
        ...


class TeacherConfig(Section):
    """Base of every teacher kind's config."""

    kind: str
    label_batch_size: Annotated[int, Field(ge=1)] = knob(64, description="texts per labeling batch (speed only)")

    needs_labeled_texts: ClassVar[bool] = True  # False: can label without gold examples (a zero-label start)
    how_trained: ClassVar[str] = "fine-tuned on the labeled examples"  # the model card's line about the teacher
    # trains on texts with several labels each and gives one independent logit per label (a sigmoid, not a softmax)
    supports_multi_label: ClassVar[bool] = False

    def inputs(self) -> list[str]:
        """User files or model folders the teacher reads: their hashes enter the teacher stage's key."""
        return []

    def check(self) -> None:
        """Preflight: fail in seconds when the teacher cannot be loaded."""

    def check_multi_label(self, label_names: list[str]) -> None:
        """Preflight of a multi-label task, for a kind that supports one (`supports_multi_label`): fail in one line
        on settings that only make sense with one label per text."""

    def check_labeled(self, train: LabeledSet, label_names: list[str]) -> None:
        """Preflight with the labeled set loaded (the data stage's check): fail in one line when the teacher
        cannot fit on it (e.g. too few texts per class to cross-validate)."""

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        """Train (or prepare) the teacher and save it to `ctx.out_dir`; returns stats for the manifest."""
        raise NotImplementedError

    def load(self, directory: Path, device: torch.device | str) -> LoadedTeacher:
        raise NotImplementedError

    def student_init(self, directory: Path) -> tuple[Path, str] | None:
        """(tokenizer folder, base model for static embeddings) for a student with `init: teacher`, or None when
        this teacher has no encoder to start from."""
        return None
