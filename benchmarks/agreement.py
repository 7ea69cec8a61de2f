"""Dev agreement: each arm's student against the teacher on held-out teacher-labeled pool texts.

The benchmarks choose between rules (a retrieval pick, a rounds selection rule) on this, never on the test file:
up to K of the dataset's own pool texts that no arm trained on (nor the labeled sample), the same texts for every
arm, labeled by the cell's teacher. Shared by benchmarks/retrieval.py and benchmarks/rounds.py.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any


def normalized(texts: Any) -> set[str]:
    """Texts as the sources keep them (whitespace runs collapsed), for set arithmetic against the pool."""
    return {" ".join(str(text).split()) for text in texts}


def dev_agreement(
    shared: Any, students: dict[str, Path], candidates: set[str], exclude: set[str], size: int, seed: int
) -> dict[str, Any]:
    """`{"dev_agreement": {arm: agreement}, "dev_texts": n}`: each student folder's agreement with the teacher of
    `shared` (the cell's run with the teacher) on up to `size` texts drawn (seeded) from `candidates` minus
    `exclude` and the labeled sample."""
    from gendistill.data.stored import read_task
    from gendistill.students.classifier import StudentClassifier

    unseen = sorted(candidates - exclude - normalized(read_task(shared.layout).train.texts))
    texts = random.Random(seed).sample(unseen, min(size, len(unseen)))
    teacher = shared.config.teacher.load(shared.layout.teacher, "cpu")
    labels = teacher.logits(texts, 64).argmax(axis=1)
    agreement = {}
    for arm, folder in students.items():
        student = StudentClassifier.from_pretrained(folder)
        agreement[arm] = round(float((student.logits(texts, 256).argmax(axis=1) == labels).mean()), 6)
    return {"dev_agreement": agreement, "dev_texts": len(texts)}
