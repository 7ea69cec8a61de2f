"""Multi-label scores, per-label thresholds and the distillation loss, against hand-computed references."""

import math

import numpy as np
import pytest
import torch

from gendistill.evaluation.multilabel import check_thresholds, decide, indicator, scores, tune_thresholds
from gendistill.students.losses import multi_label_distillation_loss


def test_scores_match_a_hand_count():
    truth = indicator([[0], [0, 1], [], [2]], 3)
    predicted = indicator([[0], [0], [1], [2]], 3)
    result = scores(truth, predicted, ["a", "b", "c"])
    # pooled: tp 3 (a, a, c), fp 1 (b on row 3), fn 1 (b on row 2) -> micro-F1 = 2*3 / (2*3 + 1 + 1)
    assert result["micro_f1"] == pytest.approx(6 / 8)
    # per label F1: a 1.0, b 0.0, c 1.0
    assert result["macro_f1"] == pytest.approx(2 / 3)
    assert result["subset_accuracy"] == pytest.approx(2 / 4)
    assert result["hamming_loss"] == pytest.approx(2 / 12)
    assert result["per_label"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_a_tuned_threshold_finds_a_rare_label_that_never_reaches_one_half():
    rng = np.random.default_rng(0)
    truth = np.zeros((200, 2), dtype=np.int8)
    truth[:20, 0] = 1
    truth[:100, 1] = 1
    probabilities = np.column_stack(
        [
            np.where(truth[:, 0] == 1, rng.uniform(0.2, 0.3, 200), rng.uniform(0.0, 0.1, 200)),
            np.where(truth[:, 1] == 1, rng.uniform(0.6, 1.0, 200), rng.uniform(0.0, 0.4, 200)),
        ]
    )
    thresholds = tune_thresholds(truth, probabilities)
    # separable: the one candidate with F1 = 1 is each label's lowest positive score (0.2-0.3 for the rare one)
    assert thresholds == [probabilities[truth[:, k] == 1, k].min() for k in range(2)]
    assert 0.2 <= thresholds[0] <= 0.3
    assert scores(truth, decide(probabilities), ["rare", "common"])["per_label"]["rare"]["f1"] == 0.0
    assert scores(truth, decide(probabilities, thresholds), ["rare", "common"])["macro_f1"] == 1.0


def test_a_label_without_positives_keeps_one_half():
    truth = np.array([[1, 0], [0, 0]], dtype=np.int8)
    assert tune_thresholds(truth, np.array([[0.9, 0.8], [0.1, 0.2]]))[1] == 0.5


@pytest.mark.parametrize(
    "bad, message",
    [([0.5, 0.0], "threshold 0.0 of label 1"), ([1.0, 0.5], "threshold 1.0"), ([0.5], "1 thresholds for 2 labels")],
)
def test_thresholds_outside_zero_one_or_miscounted_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        check_thresholds(bad, 2, "thresholds.json")


def test_the_loss_matches_a_naive_bce_against_the_teachers_tempered_sigmoid():
    student = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    teacher = torch.tensor([[2.0, -1.0, 0.0], [-1.0, 1.0, 4.0]])
    gold = torch.tensor([[-1, -1, -1], [0, 1, 1]])
    t, alpha = 2.0, 0.25

    def bce(logit, target):
        p = 1 / (1 + math.exp(-logit))
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    rows = []
    for r in range(2):
        distill = sum(bce(student[r, k].item() / t, 1 / (1 + math.exp(-teacher[r, k].item() / t))) for k in range(3))
        distill *= t**2
        if r == 1:
            rows.append(
                alpha * sum(bce(student[r, k].item(), gold[r, k].item()) for k in range(3)) + (1 - alpha) * distill
            )
        else:
            rows.append(distill)
    loss = multi_label_distillation_loss(student, teacher, gold, t, alpha)
    assert loss.item() == pytest.approx(sum(rows) / 2, rel=1e-5)


def test_the_distillation_gradient_vanishes_where_the_student_matches_the_teacher():
    teacher = torch.tensor([[2.0, -1.0, 0.3]])
    student = teacher.clone().requires_grad_(True)
    multi_label_distillation_loss(student, teacher, torch.full((1, 3), -1), temperature=2.0).backward()
    assert torch.allclose(student.grad, torch.zeros_like(student.grad), atol=1e-6)
