"""Distillation losses pinned against naive per-example references written from the papers."""

import math

import torch

from gendistill.students.losses import distillation_loss, kl_soft_targets, mse_logits


def naive_softmax(row, temperature):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def test_mse_matches_naive_mean_of_squared_differences():
    student = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    teacher = torch.tensor([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]])
    expected = [
        sum((s - t) ** 2 for s, t in zip(srow, trow)) / 3 for srow, trow in zip(student.tolist(), teacher.tolist())
    ]
    assert torch.allclose(mse_logits(student, teacher), torch.tensor(expected))


def test_kl_matches_naive_hinton_formula_times_t_squared():
    student = torch.tensor([[1.0, -2.0, 0.5], [0.2, 0.1, -0.4]])
    teacher = torch.tensor([[0.5, -1.0, 2.0], [3.0, -3.0, 0.0]])
    for temperature in (1.0, 2.0, 4.0):
        expected = []
        for srow, trow in zip(student.tolist(), teacher.tolist()):
            p, q = naive_softmax(trow, temperature), naive_softmax(srow, temperature)
            expected.append(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) * temperature**2)
        assert torch.allclose(kl_soft_targets(student, teacher, temperature), torch.tensor(expected), atol=1e-6)


def test_kl_is_zero_when_student_equals_teacher():
    logits = torch.randn(4, 5)
    assert torch.allclose(kl_soft_targets(logits, logits, 2.0), torch.zeros(4), atol=1e-6)


def test_mix_uses_ce_only_for_labeled_examples():
    student = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, -2.0]])
    gold = torch.tensor([0, -1, 1])
    alpha = 0.3
    mse = [sum((s - t) ** 2 for s, t in zip(sr, tr)) / 2 for sr, tr in zip(student.tolist(), teacher.tolist())]
    ce0 = -math.log(naive_softmax(student[0].tolist(), 1.0)[0])
    ce2 = -math.log(naive_softmax(student[2].tolist(), 1.0)[1])
    expected = (alpha * ce0 + (1 - alpha) * mse[0] + mse[1] + alpha * ce2 + (1 - alpha) * mse[2]) / 3
    loss = distillation_loss(student, teacher, gold, kind="mse", alpha=alpha)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
