"""Calibration math (evaluation.calibration) against hand-computed values: ECE with 15 equal-width bins, the
multi-class Brier score, temperature scaling recovering a known temperature, and the selective-prediction
threshold and risk-coverage curve."""

from __future__ import annotations

import numpy as np
import pytest

from gendistill.evaluation.calibration import (
    accuracy_lower_bound,
    brier_score,
    choose_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability,
    risk_coverage,
    selective_counts,
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


def test_cross_validation_keeps_a_real_miscalibration_and_drops_a_fit_to_noise():
    """choose_temperature on a clearly overconfident model uses the fit (T near 3, and the CV figures say why); on a
    calibrated model with a small split, where the fit lands away from 1 by noise, whichever T it returns is backed
    by its own CV figures."""
    rng = np.random.default_rng(2)
    true_logits = rng.normal(0, 2, size=(600, 4))
    labels = np.array([rng.choice(4, p=row) for row in softmax(true_logits)])
    overconfident = choose_temperature(3 * true_logits, labels)
    assert overconfident.temperature == overconfident.fitted == pytest.approx(3.0, rel=0.15)
    assert overconfident.cv_nll_fitted < overconfident.cv_nll_identity - 0.1
    assert not overconfident.kept_identity
    kept = [choose_temperature(true_logits[i : i + 60], labels[i : i + 60]) for i in range(0, 600, 60)]
    for choice in kept:
        assert choice.temperature in (1.0, choice.fitted)
        assert (choice.temperature == 1.0) == (choice.cv_nll_fitted >= choice.cv_nll_identity)
    assert any(choice.kept_identity for choice in kept)  # calibrated: on some splits the fit is only noise
    assert choose_temperature(true_logits[:60], labels[:60]) == kept[0]  # seeded folds: the same choice again
    tiny = choose_temperature(3 * true_logits[:6], labels[:6])  # too few texts to fold: the plain fit
    assert tiny.cv_nll_fitted is None and tiny.temperature == tiny.fitted


def test_on_a_calibrated_model_the_cross_validated_choice_beats_the_plain_fit_on_new_data():
    """The reason for the check, simulated: a model that is calibrated (labels drawn from its own probabilities),
    100 held-out splits of 150 texts. The temperature the CV check leaves gives a lower NLL on 20,000 new texts than
    the plain fit, on average: the fit moves a calibrated model by the noise of its split."""
    rng = np.random.default_rng(3)
    population = rng.normal(0, 2, size=(20_000, 5))
    truth = (rng.random(len(population))[:, None] > np.cumsum(softmax(population), axis=1)).sum(axis=1)
    plain, checked, kept = [], [], 0
    for _ in range(100):
        draw = rng.normal(0, 2, size=(150, 5))
        labels = (rng.random(150)[:, None] > np.cumsum(softmax(draw), axis=1)).sum(axis=1)
        choice = choose_temperature(draw, labels)
        plain.append(negative_log_likelihood(population, truth, choice.fitted))
        checked.append(negative_log_likelihood(population, truth, choice.temperature))
        kept += choice.kept_identity
    assert np.mean(checked) < np.mean(plain)
    assert kept >= 30  # T = 1 kept on many of the splits


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


def test_the_lower_bound_on_a_thresholds_accuracy_is_clopper_pearsons_and_tightens_with_answered_texts():
    """With every answered text right the one-sided bound has a closed form, p ** (1 / n) for 1 - p = 0.1; the
    bound rises with the count at the same held-out accuracy, and it holds: over many draws of a 90%-accurate
    model's answered texts, the bound is above 0.9 in at most about a tenth of them."""
    assert accuracy_lower_bound(10, 10, 0.9) == pytest.approx(0.1 ** (1 / 10))
    assert accuracy_lower_bound(0, 5, 0.9) == 0.0
    bounds = [accuracy_lower_bound(19 * k, 20 * k) for k in (1, 5, 50)]
    assert bounds == sorted(bounds) and bounds[-1] < 0.95 and bounds[0] < 0.85
    rng = np.random.default_rng(0)
    right = rng.binomial(60, 0.9, size=2000)
    above = np.mean([accuracy_lower_bound(int(r), 60) > 0.9 for r in right])
    assert 0.02 < above <= 0.1  # exact bounds are conservative, not vacuous
    assert selective_counts(PROBABILITIES, LABELS, 0.5) == (3, 2)
    assert selective_counts(PROBABILITIES, LABELS, 0.95) == (0, 0)


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


def test_the_guaranteed_threshold_passes_its_bound_and_answers_fewer_texts_than_the_point_estimate():
    """SGR on 400 texts, the top 300 right and every other one below them wrong. Its first cut (201 texts, no
    error) and second (301 texts, 1 error) pass the Clopper-Pearson bound at (1 - 0.9) / 9 tests, so it answers at
    least 301; where it stops, the bound holds; the point estimate answers more (95% on the held-out texts
    themselves is reached further down)."""
    from scipy.stats import beta

    confidence = np.linspace(0.99, 0.51, 400)
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.zeros(400, dtype=int)
    labels[300:][::2] = 1
    chosen = threshold_for_accuracy(probabilities, labels, 0.95, guarantee=0.9)
    point = threshold_for_accuracy(probabilities, labels, 0.95)
    answered = int((confidence >= chosen).sum())
    errors = int(labels[:answered].sum())
    delta = (1 - 0.9) / 9  # ceil(log2(400 + 1)) tests
    assert beta.ppf(1 - delta, errors + 1, answered - errors) <= 0.05
    assert 301 <= answered < int((confidence >= point).sum())
    assert errors / answered <= 0.05 and labels[: int((confidence >= point).sum())].mean() <= 0.05
    # at 100 texts, one wrong, no threshold can be guaranteed: the bound on the top 50 alone is above 5%
    few = threshold_for_accuracy(probabilities[:100], np.r_[np.zeros(99, int), 1], 0.95, guarantee=0.9)
    assert few is None and threshold_for_accuracy(probabilities[:100], np.r_[np.zeros(99, int), 1], 0.95) is not None
    with pytest.raises(ValueError, match=r"guarantee must be in \(0, 1\)"):
        threshold_for_accuracy(probabilities, labels, 0.95, guarantee=1.0)


def test_the_guaranteed_threshold_keeps_the_target_on_new_data_where_the_point_estimate_does_not():
    """Held-out sets of 1,000 texts drawn 200 times from one model whose confidence is its true accuracy
    (confidence 0.5 + 0.5 u^(1/6)): the true accuracy of the texts above a threshold t is known, the mean confidence
    above t, taken from 2M draws. A point-estimate threshold for 95% misses that target on the population about
    half the time; the one guaranteed with probability 0.9 misses it at most 10% of the time (SGR's promise; the
    union bound makes it far rarer), at the price of coverage."""
    rng = np.random.default_rng(0)

    def confidences(n: int) -> np.ndarray:
        return 0.5 + 0.5 * rng.uniform(size=n) ** (1 / 6)

    population = np.sort(confidences(2_000_000))[::-1]
    mean_above = np.cumsum(population) / np.arange(1, len(population) + 1)

    def true_accuracy_and_coverage(threshold: float) -> tuple[float, float]:
        answered = np.searchsorted(-population, -threshold, side="right")
        return float(mean_above[answered - 1]), answered / len(population)

    missed = {None: 0, 0.9: 0}
    coverage: dict = {None: [], 0.9: []}
    draws = 200
    for _ in range(draws):
        confidence = confidences(1000)
        labels = (rng.uniform(size=1000) >= confidence).astype(int)  # right (label 0) with probability = confidence
        probabilities = np.stack([confidence, 1 - confidence], axis=1)
        for guarantee in missed:
            threshold = threshold_for_accuracy(probabilities, labels, 0.95, guarantee=guarantee)
            if threshold is None:
                continue
            accuracy, covered = true_accuracy_and_coverage(threshold)
            missed[guarantee] += accuracy < 0.95
            coverage[guarantee].append(covered)
    assert missed[None] / draws > 0.3
    assert missed[0.9] / draws <= 0.1
    assert len(coverage[0.9]) > 0.8 * draws  # at 1,000 held-out texts a guaranteed threshold is usually found
    assert np.mean(coverage[0.9]) < np.mean(coverage[None])
