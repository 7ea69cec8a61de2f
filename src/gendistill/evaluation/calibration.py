"""Calibration and selective prediction, as pure functions of logits, probabilities and labels.

Temperature scaling (Guo et al., 2017) divides the logits by one fitted T > 0: it changes every probability but no
argmax, so accuracy stays what it was and only the confidence moves. T is fitted on a held-out split, never the
test set; ECE and the Brier score are then measured on test before and after, for the report. `choose_temperature`
keeps T = 1 unless the fit also wins in cross-validation on that split (a calibrated model is not moved by noise).

Selective prediction answers only above a confidence threshold: the risk-coverage curve shows the error rate of the
answered texts against the share answered, and `threshold_for_accuracy` picks the lowest threshold that keeps a
target accuracy on the held-out split (so the coverage it gives on test is an honest estimate). That threshold is a
point estimate: on a few hundred held-out texts the answered texts' accuracy on new data lands about as often under
the target as over it. With a `guarantee` (a probability), `threshold_for_accuracy` instead chooses the threshold that
keeps the target with that probability over the draw of the held-out split: Geifman & El-Yaniv's selection with
guaranteed risk (SGR, "Selective Classification for Deep Neural Networks", NeurIPS 2017), a binary search over the
thresholds that tests each with an exact binomial (Clopper-Pearson) bound at (1 - guarantee) / steps, a union bound
over the at most log2(n) + 1 tests it makes. The price is coverage, and on small held-out splits often no threshold at
all (the bound on a few dozen answered texts is loose). Hand-written (about twenty lines over scipy's beta quantile):
MAPIE's risk controllers cover multi-label precision/recall and binary decisions, not one top-label threshold of a
multi-class model, and would add a dependency for this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ECE_BINS = 15
# T is searched on log T in this range: far outside it the probabilities are all 1/K or all one-hot, and a fit that
# lands on a bound means the held-out split says nothing useful (too small, or perfectly separated)
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
CURVE_POINTS = 101  # a risk-coverage curve kept in report.json is cut to about this many points


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, in float64 (stable: the row maximum is subtracted first)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of the tempered softmax against integer labels (log-sum-exp, no overflow)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    peak = scaled.max(axis=1, keepdims=True)
    log_norm = peak[:, 0] + np.log(np.exp(scaled - peak).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(scaled)), np.asarray(labels)]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimizes held-out NLL of softmax(logits / T): a bounded 1-D search on log T (scipy's Brent),
    which needs no learning rate and gives the same T on every machine."""
    from scipy.optimize import minimize_scalar  # scipy loads in ~0.3 s: imported on use

    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("cannot fit a temperature on no examples")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


CV_FOLDS = 5  # folds of the check that a fitted temperature generalises (choose_temperature)


@dataclass(frozen=True)
class TemperatureChoice:
    """The temperature to use and why: `fitted` minimizes the NLL of the whole held-out split; `temperature` is
    `fitted`, or 1.0 when the cross-validated NLL says the fit does not generalise (`cv_nll_fitted` not below
    `cv_nll_identity`: each fold's texts scored at the T fitted on the other folds, against T = 1). The two CV
    figures are None when the split is too small to fold (fewer than two texts per fold): then `fitted` is used."""

    temperature: float
    fitted: float
    cv_nll_fitted: float | None = None
    cv_nll_identity: float | None = None

    @property
    def kept_identity(self) -> bool:
        return self.temperature == 1.0 and self.fitted != 1.0


def choose_temperature(
    logits: np.ndarray, labels: np.ndarray, folds: int = CV_FOLDS, seed: int = 0
) -> TemperatureChoice:
    """Temperature scaling with a check that it helps: fit T on the held-out split, then keep T = 1 unless T fitted
    on k-1 folds lowers the NLL of the k-th, summed over the folds, below what T = 1 gives there.

    Why: a distilled student learns the teacher's soft labels on texts drawn as its test texts are, and often comes
    out calibrated already (GoEmotions, 28 classes: test ECE 0.02-0.04 before scaling). A temperature fitted on a
    few hundred held-out texts then moves it by noise, or toward the held-out split's class balance where that
    differs from the deployed texts': measured, it made that student's test ECE worse on 3 seeds of 3. Fitting
    minimizes the split's own NLL, so it always "improves" in-sample; only held-out folds can tell a real
    miscalibration (sst2 students: fitted T 1.9-3.4) from a fit to noise. The folds are a seeded shuffle: the same
    split gives the same choice on every machine."""
    from sklearn.model_selection import KFold  # scikit-learn loads in ~0.7 s: imported on use

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    fitted = fit_temperature(logits, labels)
    if len(labels) < 2 * folds:
        return TemperatureChoice(temperature=fitted, fitted=fitted)
    nll_fitted = nll_identity = 0.0
    for train, held in KFold(folds, shuffle=True, random_state=seed).split(logits):
        fold_t = fit_temperature(logits[train], labels[train])
        nll_fitted += negative_log_likelihood(logits[held], labels[held], fold_t) * len(held)
        nll_identity += negative_log_likelihood(logits[held], labels[held]) * len(held)
    nll_fitted, nll_identity = nll_fitted / len(labels), nll_identity / len(labels)
    return TemperatureChoice(
        temperature=fitted if nll_fitted < nll_identity else 1.0,
        fitted=fitted,
        cv_nll_fitted=nll_fitted,
        cv_nll_identity=nll_identity,
    )


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of the top-label confidence with `bins` equal-width bins over (0, 1]: sum over bins of
    |bin| / n * |accuracy(bin) - mean confidence(bin)| (bin b holds confidences in ((b-1)/bins, b/bins])."""
    return sum(row.count * abs(row.accuracy - row.confidence) for row in reliability(probabilities, labels, bins)) / (
        max(len(labels), 1)
    )


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: the mean over texts of sum_k (p_k - [k == label])^2, in [0, 2] (scikit-learn's
    brier_score_loss without the binary halving, so two classes and twenty read on one scale)."""
    from sklearn.metrics import brier_score_loss  # scikit-learn loads in ~0.7 s: imported on use

    probabilities = np.asarray(probabilities, dtype=np.float64)
    return float(
        brier_score_loss(labels, probabilities, labels=list(range(probabilities.shape[1])), scale_by_half=False)
    )


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram: its bounds, how many texts fell in it, their mean confidence, and the
    share of them predicted right."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """The non-empty bins of the top-label confidence (equal width over (0, 1]), in order."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    # bin b holds (b/bins, (b+1)/bins]: ceil puts a confidence of exactly 1 in the last bin, 1/bins in the first
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        if count:
            rows.append(
                ReliabilityBin(
                    low=b / bins,
                    high=(b + 1) / bins,
                    count=count,
                    confidence=float(confidence[members].mean()),
                    accuracy=float(correct[members].mean()),
                )
            )
    return rows


@dataclass(frozen=True)
class RiskCoverage:
    """Answering only the most confident texts first: after the i most confident, `coverage[i-1]` = i / n,
    `risk[i-1]` the error rate among them and `threshold[i-1]` the i-th highest confidence."""

    coverage: np.ndarray
    risk: np.ndarray
    threshold: np.ndarray

    def thinned(self, points: int = CURVE_POINTS) -> RiskCoverage:
        """About `points` evenly spaced points of the curve (its last point, full coverage, always kept)."""
        if len(self.coverage) <= points:
            return self
        keep = np.unique(np.linspace(0, len(self.coverage) - 1, points).round().astype(int))
        return RiskCoverage(self.coverage[keep], self.risk[keep], self.threshold[keep])


def risk_coverage(probabilities: np.ndarray, labels: np.ndarray) -> RiskCoverage:
    """The risk-coverage curve of the top-label confidence (ties broken by input order: a stable sort)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    order = np.argsort(-confidence, kind="stable")
    answered = np.arange(1, len(order) + 1)
    errors = np.cumsum(~correct[order])
    return RiskCoverage(answered / len(order), errors / answered, confidence[order])


def threshold_for_accuracy(
    probabilities: np.ndarray, labels: np.ndarray, target: float, guarantee: float | None = None
) -> float | None:
    """The lowest confidence threshold t such that the texts with confidence >= t are right at least `target` of
    the time: the largest coverage that meets the target. Texts tied at t are all in or all out, as they will be
    when the threshold is applied. None when no threshold reaches the target (not even the most confident text).
    With `guarantee` (in (0, 1)), "meets the target" means the accuracy's Clopper-Pearson lower bound does, and the
    search is SGR's (see the module docstring): with probability >= guarantee the threshold's accuracy on the
    distribution the held-out texts came from is at least `target`; it never answers more texts than the point
    estimate (a cut that passes the bound also meets the target on the held-out texts)."""
    if not 0 < target < 1:
        raise ValueError(f"target accuracy must be in (0, 1), got {target}")
    if guarantee is not None and not 0 < guarantee < 1:
        raise ValueError(f"guarantee must be in (0, 1), got {guarantee}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    if not len(correct):
        return None
    order = np.argsort(-confidence, kind="stable")
    ordered = confidence[order]
    accuracy = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    # a threshold can only fall between distinct confidences: the last position of each run of ties
    ends = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    if guarantee is not None:
        errors = np.cumsum(~correct[order])
        return _guaranteed_threshold(ordered, ends, errors, 1 - target, 1 - guarantee)
    meeting = ends[accuracy[ends] >= target]
    return float(ordered[meeting[-1]]) if len(meeting) else None


def error_upper_bound(errors: int, answered: int, delta: float) -> float:
    """One-sided Clopper-Pearson upper bound on an error rate seen as `errors` in `answered`: the true rate is
    below it with probability >= 1 - delta."""
    from scipy.stats import beta  # imported on use, as scipy.optimize above

    return 1.0 if errors >= answered else float(beta.ppf(1 - delta, errors + 1, answered - errors))


def _guaranteed_threshold(
    ordered: np.ndarray, ends: np.ndarray, errors: np.ndarray, max_risk: float, delta: float
) -> float | None:
    """SGR: binary search over the candidate cut positions `ends` (most confident first), each tested with the
    bound at delta / steps; a passing cut moves the search to more coverage, a failing one to less."""
    steps = max(1, math.ceil(math.log2(len(ends) + 1)))
    low, high, best = 0, len(ends) - 1, None
    for _ in range(steps):
        if low > high:
            break
        middle = (low + high + 1) // 2
        cut = ends[middle]
        if error_upper_bound(int(errors[cut]), int(cut) + 1, delta / steps) <= max_risk:
            best, low = middle, middle + 1
        else:
            high = middle - 1
    return None if best is None else float(ordered[ends[best]])


# How sure the report's lower bound on a threshold's held-out accuracy is (one-sided Clopper-Pearson)
BOUND_PROBABILITY = 0.9


def accuracy_lower_bound(right: int, answered: int, probability: float = BOUND_PROBABILITY) -> float:
    """One-sided Clopper-Pearson lower bound on an accuracy seen as `right` of `answered`: the true accuracy is
    above it with `probability`. It says how far a threshold chosen on few answered texts can be trusted: 10 of 10
    right bounds the accuracy only at 79%, 95 of 100 at 91%."""
    return 1.0 - error_upper_bound(answered - right, answered, 1.0 - probability)


def selective_counts(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[int, int]:
    """(answered, right among them) at `threshold`: a text is answered when its top probability is >= threshold."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    kept = probabilities.max(axis=1) >= threshold
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    return int(kept.sum()), int(correct[kept].sum())


def selective_scores(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float | None]:
    """(coverage, accuracy of the answered texts) at `threshold`: a text is answered when its top probability is
    >= threshold. Accuracy is None when nothing is answered."""
    answered, right = selective_counts(probabilities, labels, threshold)
    total = len(probabilities)
    return (answered / total if total else 0.0), (right / answered if answered else None)
