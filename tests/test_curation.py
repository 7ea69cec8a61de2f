"""Transfer-set curation (label.*): each option's keep mask on hand-made inputs, then end to end: the student trains
on the kept rows only, the report counts what was dropped and the classes kept, and curation off keeps old keys."""

import json

import numpy as np
from conftest import make_tiny_config

from gendistill import Run
from gendistill.config import build_config
from gendistill.data import curation


def test_drop_most_uncertain_removes_the_highest_entropy_rows():
    logits = np.array([[5.0, 0.0], [0.1, 0.0], [0.0, 4.0], [0.0, 0.0], [3.0, 0.0]])
    keep = curation.drop_most_uncertain(logits, 0.4, np.ones(5, dtype=bool))
    assert keep.tolist() == [True, False, True, False, True]  # the two near-uniform rows go
    already = np.array([True, True, True, False, True])  # a fraction of the rows still kept
    assert curation.drop_most_uncertain(logits, 0.25, already).tolist() == [True, False, True, False, True]


def test_rebalance_caps_every_class_at_a_ratio_of_the_rarest():
    labels = np.array([0] * 10 + [1] * 2 + [2] * 5)
    keep = curation.rebalance(labels, 1.5, np.ones(17, dtype=bool), seed=0)
    assert [int((labels[keep] == c).sum()) for c in range(3)] == [3, 2, 3]
    assert keep[10:12].all()  # the rarest class is never subsampled


def test_near_duplicates_keep_the_first_of_each_group_and_every_distinct_text():
    texts = [
        "the central bank raised interest rates by half a point on tuesday",
        "the central bank raised interest rates by half a point on wednesday",
        "a striker scored twice as the home side won the cup final",
        "the central bank raised interest rates by half a point on tuesday morning",
        "new telescope images show a galaxy forming stars at a record pace",
    ]
    keep = curation.near_duplicate_keep(texts, threshold=0.7)
    assert keep.tolist() == [True, False, True, False, True]
    assert curation.near_duplicate_keep(texts, threshold=0.95).sum() >= 4  # a strict threshold keeps near-copies


def _config(task_dir, teacher_dir):
    config = make_tiny_config(task_dir, teacher_dir)
    config["transfer"]["sources"] = [{"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 40}]
    config["student"]["baseline"] = False
    return config


def test_curation_trains_the_student_on_the_kept_rows_and_reports_them(task_dir, tiny_teacher_dir, tmp_path):
    config = _config(task_dir, tiny_teacher_dir)
    plain = Run(build_config(config), tmp_path / "plain")
    explicit_off = Run(build_config(config, ["label.drop_uncertain=0", "label.rebalance=null"]), tmp_path / "off")
    assert plain.keys()["label"]["key"] == explicit_off.keys()["label"]["key"]
    curated = Run(build_config(config, ["label.drop_uncertain=0.5"]), tmp_path / "curated")
    assert curated.keys()["label"]["key"] != plain.keys()["label"]["key"]
    report = curated.run()
    summary = curated.records["label"]["summary"]
    assert summary["transfer_dropped"] == {"uncertain": 20} and summary["transfer_kept"] == 20
    assert sum(summary["transfer_classes"].values()) == 20
    assert curated.records["distill"]["summary"]["examples"] == curated.records["data"]["summary"]["train"] + 20
    assert report.transfer_set.curated == {"uncertain": 20} and report.transfer_set.trained_on == 20
    md = (tmp_path / "curated" / "report.md").read_text()
    assert "Curation dropped uncertain 20; the student trained on 20." in md and "By the teacher's label:" in md
    html = (tmp_path / "curated" / "report.html").read_text()
    assert "Curation dropped uncertain 20; the student trained on 20." in html and 'id="transfer-classes"' in html
    # the curation goes when it is switched off: the same labels, every row back
    back = Run(build_config(config), tmp_path / "curated")
    back.run(force=["changed"])
    assert back.records["distill"]["summary"]["examples"] == back.records["data"]["summary"]["train"] + 40
    assert not (tmp_path / "curated" / "labels" / "curation.parquet").exists()
    assert json.loads((tmp_path / "curated" / "report.json").read_text())["transfer_set"]["curated"] == {}
