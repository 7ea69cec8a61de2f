"""Derived files damaged on disk (issue 25): a memory-mapped example store whose files no longer match the sha256
its meta.json recorded is rebuilt with one warning, never memory-mapped into wrong examples or a traceback.
(Damaged checkpoints: tests/test_resume.py; damaged shards: tests/test_transfer.py and tests/test_run_dir.py.)"""

import json

import numpy as np
import pytest
from conftest import LABELS, labeled

from gendistill.config import StudentConfig
from gendistill.students.building import make_student
from gendistill.students.example_store import ExampleStore


@pytest.mark.parametrize("damage", ["truncated", "edited", "meta_json"])
def test_a_damaged_example_store_is_rebuilt_with_one_warning(tmp_path, caplog, damage):
    texts, gold = labeled(4, 0)
    student = make_student(StudentConfig(arch="bag", init="random", embedding_dim=8), texts, LABELS, 0)
    logits = np.random.default_rng(0).normal(size=(len(texts), len(LABELS))).astype(np.float32)
    chunk = (texts, logits, gold)
    store = ExampleStore.build(tmp_path / "store", [chunk], student.tokenizer.encode, len(LABELS))
    expected = [(ids, np.array(row), label) for ids, row, label in (store[i] for i in range(len(store)))]  # no views
    del store
    mtime = (tmp_path / "store" / "ids.bin").stat().st_mtime_ns
    ExampleStore.build(tmp_path / "store", iter(()), student.tokenizer.encode, len(LABELS))  # intact: reused as is
    assert (tmp_path / "store" / "ids.bin").stat().st_mtime_ns == mtime
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    victim = tmp_path / "store" / {"truncated": "ids.bin", "edited": "logits.bin", "meta_json": "meta.json"}[damage]
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:10])  # was: a traceback from np.memmap
    elif damage == "edited":  # same size, other values: was silently trained on
        victim.write_bytes(np.zeros(victim.stat().st_size // 4, np.float32).tobytes())
    else:
        victim.write_text(json.dumps({"size": 1}))
    rebuilt = ExampleStore.build(tmp_path / "store", [chunk], student.tokenizer.encode, len(LABELS))
    for (ids, row_logits, label), (ids2, logits2, label2) in zip(
        expected, (rebuilt[i] for i in range(len(rebuilt))), strict=True
    ):
        assert ids == ids2 and label == label2 and (row_logits == logits2).all()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(victim) in warnings[0] and "rebuilding" in warnings[0], warnings
