"""Calibration math (evaluation.calibration) against hand-computed values: ECE with 15 equal-width bins, the
multi-class Brier score, temperature scaling recovering a known temperature, and the selective-prediction
threshold and risk-coverage curve."""

from __future__ import annotations

import numpy as np
import pytest

from gendistill.evaluation.calibration import (
    brier_score,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability,
    risk_coverage,
    selective_scores,
    softmax,
    threshold_for_accuracy,
)

# four texts, three classes; top confidences 0.9 (right), 0.8 (wrong), 0.5 (right), 0.4 (wrong)
PROBABILITIES = np.array(
    [
        [0.9, 0.05, 0.05],
        [0.1, 0.8, 0.1],
        [0.5, 0.3, 0.2],
        [0.3, 0.3, 0.4],
    ]
)
LABELS = np.array([0, 0, 0, 1])


def test_ece_by_hand_with_15_bins():
    # 15 bins of width 1/15: 0.9 -> bin 14 (13/15, 14/15], 0.8 -> bin 12 (11/15, 12/15], 0.5 -> bin 8 (7/15, 8/15],
    # 0.4 -> bin 6 (5/15, 6/15]: one text per bin, so ECE = mean |correct - confidence|
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.5) + abs(0 - 0.4)) / 4  # = 0.45
    assert expected_calibration_error(PROBABILITIES, LABELS) == pytest.approx(0.45)
    assert expected_calibration_error(PROBABILITIES, LABELS) == pytest.approx(expected)
    # two texts sharing a bin pool their accuracy before comparing: 0.81 and 0.85 are both in (0.8, 0.8667]
    shared = np.array([[0.81, 0.19], [0.85, 0.15]])
    assert expected_calibration_error(shared, np.array([0, 1])) == pytest.approx(abs(0.5 - 0.83))
    bins = reliability(shared, np.array([0, 1]))
    assert len(bins) == 1 and bins[0].count == 2 and bins[0].accuracy == 0.5
    assert bins[0].low == pytest.approx(12 / 15) and bins[0].high == pytest.approx(13 / 15)


def test_a_confidence_on_a_bin_edge_and_of_one_fall_in_the_lower_bin():
    edge = np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    bins = reliability(edge, np.array([0, 0]))
    assert [(round(b.low * 15), round(b.high * 15)) for b in bins] == [(4, 5), (14, 15)]


def test_multiclass_brier_by_hand():
    # sum over classes of (p - onehot)^2 per text, then the mean
    per_text = [
        0.1**2 + 0.05**2 + 0.05**2,
        0.9**2 + 0.8**2 + 0.1**2,
        0.5**2 + 0.3**2 + 0.2**2,
        0.3**2 + 0.7**2 + 0.4**2,
    ]
    assert brier_score(PROBABILITIES, LABELS) == pytest.approx(np.mean(per_text))
    assert brier_score(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])) == 0.0
    assert brier_score(np.array([[0.0, 1.0]]), np.array([0])) == pytest.approx(2.0)  # not halved for two classes


def test_temperature_fit_recovers_a_known_temperature_and_lowers_nll():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 5))
    labels = np.array([rng.choice(5, p=row) for row in softmax(true_logits)])  # labels drawn from the true model
    overconfident = 3 * true_logits  # what an overconfident network says: the true logits scaled by 3
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.08)
    before = negative_log_likelihood(overconfident, labels)
    after = negative_log_likelihood(overconfident, labels, temperature)
    assert after < before - 0.1
    calibrated = softmax(overconfident, temperature)
    assert expected_calibration_error(calibrated, labels) < expected_calibration_error(softmax(overconfident), labels)
    assert (calibrated.argmax(axis=1) == overconfident.argmax(axis=1)).all()  # temperature never changes a label


def test_an_underconfident_model_gets_a_temperature_below_one():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 3, size=(3000, 3))
    labels = np.array([rng.choice(3, p=row) for row in softmax(true_logits)])
    assert fit_temperature(true_logits / 2, labels) == pytest.approx(0.5, rel=0.1)


def test_threshold_for_target_accuracy_takes_the_largest_coverage_that_meets_it():
    # sorted by confidence: 0.9 right, 0.8 wrong, 0.5 right, 0.4 wrong -> accuracy 1, 1/2, 2/3, 1/2 as texts are added
    assert threshold_for_accuracy(PROBABILITIES, LABELS, 0.95) == pytest.approx(0.9)
    assert threshold_for_accuracy(PROBABILITIES, LABELS, 0.6) == pytest.approx(0.5)
    assert threshold_for_accuracy(PROBABILITIES, LABELS, 0.5) == pytest.approx(0.4)
    assert threshold_for_accuracy(PROBABILITIES, np.array([1, 0, 1, 0]), 0.5) is None  # even the top text is wrong
    assert selective_scores(PROBABILITIES, LABELS, 0.5) == (0.75, pytest.approx(2 / 3))
    assert selective_scores(PROBABILITIES, LABELS, 0.95) == (0.0, None)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        threshold_for_accuracy(PROBABILITIES, LABELS, 1.0)


def test_tied_confidences_are_kept_or_dropped_together():
    tied = np.array([[0.9, 0.1], [0.7, 0.3], [0.7, 0.3]])
    # 0.9 right, then both 0.7 texts (one right, one wrong): 2/3 overall; no threshold splits the tie
    assert threshold_for_accuracy(tied, np.array([0, 0, 1]), 0.7) == pytest.approx(0.9)
    assert threshold_for_accuracy(tied, np.array([0, 0, 1]), 0.6) == pytest.approx(0.7)


def test_risk_coverage_curve_by_hand():
    curve = risk_coverage(PROBABILITIES, LABELS)
    assert curve.coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert curve.risk.tolist() == pytest.approx([0.0, 0.5, 1 / 3, 0.5])
    assert curve.threshold.tolist() == pytest.approx([0.9, 0.8, 0.5, 0.4])
    long = risk_coverage(softmax(np.random.default_rng(0).normal(size=(1000, 3))), np.zeros(1000, dtype=int))
    thin = long.thinned(11)
    assert len(thin.coverage) == 11 and thin.coverage[-1] == 1.0 and thin.risk[-1] == long.risk[-1]
