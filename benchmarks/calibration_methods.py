"""Two candidate changes to how the evaluate stage calibrates and thresholds (issue 22), judged on held-out folds.

Where `benchmarks/calibration.py` measures the default on test, this script asks whether a change to the default
would be better, on the validation split alone: for each finished cell of a calibration.py cache (its student
folder and its validation and test files), the student's logits are computed once, then the validation split is
cut into 5 folds (4 shuffles); each rule is fitted on 4 folds and applied to the 5th, and the held-out NLL and the
answered texts at the 95% threshold are pooled over folds, shuffles and seeds per dataset. The test file is scored
only with `--test`, for the report, after the rule was decided on the folds.

The rules compared:
- calibration `current`: the library's (`calibration.choose_temperature`: T = 1 unless a fitted T lowers the
  cross-validated NLL); `auto`: the lowest 5-fold CV NLL among T = 1, temperature, and temperature plus a per-class
  bias (bias-corrected temperature scaling, Alexandari et al. 2020, "Maximum likelihood with bias-corrected
  calibration is hard-to-beat at label shift adaptation"). A bias moves the argmax, so `auto` can change accuracy.
- threshold `current`: the library's point estimate (`calibration.threshold_for_accuracy`); `floor`: the same with
  the answered held-out texts' mean calibrated confidence also >= the target.

    python benchmarks/calibration_methods.py --cache /work/bench-cache-cal43 --logits /tmp/logits [--test]

Outputs: per-cell logits as .npz under --logits (validation and test, the student's and the baseline's; reused
when present), and a JSON summary on stdout (`dev` per dataset; `test` per cell with --test).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import log_softmax

Params = tuple[float, np.ndarray]  # (temperature, per-class bias)
TARGET = 0.95
OUTER_FOLDS, SHUFFLES = 5, 4


def dump_logits(cache: Path, out: Path) -> list[Path]:
    """The student's (and the baseline's) logits on each finished cell's validation and test files."""
    import pyarrow.parquet as pq

    from gendistill.pipeline.layout import RunLayout
    from gendistill.students.classifier import StudentClassifier

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for cell in sorted(path for path in cache.iterdir() if (path / "run" / "report.json").is_file()):
        target = out / f"{cell.name}.npz"
        if not target.exists():
            layout, arrays = RunLayout(cell / "run"), {}
            for name, folder in (("student", layout.final_student), ("baseline", layout.baseline_student)):
                model = StudentClassifier.from_pretrained(folder)
                for split in ("validation", "test"):
                    table = pq.read_table(layout.root / "data" / f"{split}.parquet")
                    arrays[f"{name}_{split}"] = model.logits(table.column("text").to_pylist())
                    arrays[f"y_{split}"] = np.asarray(table.column("label").to_pylist())
            np.savez(target, **arrays)
        files.append(target)
    return files


def probabilities(logits: np.ndarray, params: Params) -> np.ndarray:
    return np.exp(log_softmax(logits / params[0] + params[1], axis=1))


def nll(logits: np.ndarray, labels: np.ndarray, params: Params) -> float:
    return float(-log_softmax(logits / params[0] + params[1], axis=1)[np.arange(len(labels)), labels].mean())


def fit_temperature_and_bias(logits: np.ndarray, labels: np.ndarray) -> Params:
    """BCTS: log T and a bias per class by L-BFGS on the NLL (analytic gradient), from the plain fit's T."""
    from scipy.optimize import minimize

    from gendistill.evaluation.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE, fit_temperature

    n, k = logits.shape
    onehot = np.eye(k)[labels]

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        temperature, bias = np.exp(params[0]), params[1:]
        log_p = log_softmax(logits / temperature + bias, axis=1)
        grad = (np.exp(log_p) - onehot) / n  # d loss / d scores
        return float(-log_p[np.arange(n), labels].mean()), np.concatenate(
            [[(grad * (-logits / temperature)).sum()], grad.sum(axis=0)]
        )

    start = np.zeros(k + 1)
    start[0] = np.log(fit_temperature(logits, labels))
    bounds = [(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE))] + [(None, None)] * k
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return float(np.exp(result.x[0])), result.x[1:] - result.x[1:].mean()


def fit_method(method: str, logits: np.ndarray, labels: np.ndarray) -> Params:
    from gendistill.evaluation.calibration import fit_temperature

    if method == "identity":
        return 1.0, np.zeros(logits.shape[1])
    if method == "temperature":
        return fit_temperature(logits, labels), np.zeros(logits.shape[1])
    return fit_temperature_and_bias(logits, labels)


def cv_nll(method: str, logits: np.ndarray, labels: np.ndarray, folds: int = 5) -> float:
    from sklearn.model_selection import KFold

    total = 0.0
    for train, held in KFold(folds, shuffle=True, random_state=0).split(logits):
        total += nll(logits[held], labels[held], fit_method(method, logits[train], labels[train])) * len(held)
    return total / len(labels)


def calibrate_current(logits: np.ndarray, labels: np.ndarray) -> Params:
    from gendistill.evaluation.calibration import choose_temperature

    return choose_temperature(logits, labels).temperature, np.zeros(logits.shape[1])


def calibrate_auto(logits: np.ndarray, labels: np.ndarray) -> Params:
    best = min(("identity", "temperature", "bias"), key=lambda method: cv_nll(method, logits, labels))
    return fit_method(best, logits, labels)


def threshold_current(probs: np.ndarray, labels: np.ndarray) -> float | None:
    from gendistill.evaluation.calibration import threshold_for_accuracy

    return threshold_for_accuracy(probs, labels, TARGET)


def threshold_floor(probs: np.ndarray, labels: np.ndarray) -> float | None:
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    order = np.argsort(-confidence, kind="stable")
    ordered, count = confidence[order], np.arange(1, len(order) + 1)
    accuracy, mean_confidence = np.cumsum(correct[order]) / count, np.cumsum(ordered) / count
    ends = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    meeting = ends[(accuracy[ends] >= TARGET) & (mean_confidence[ends] >= TARGET)]
    return float(ordered[meeting[-1]]) if len(meeting) else None


CALIBRATIONS: dict[str, Callable[[np.ndarray, np.ndarray], Params]] = {
    "current": calibrate_current,
    "auto": calibrate_auto,
}
THRESHOLDS: dict[str, Callable[[np.ndarray, np.ndarray], float | None]] = {
    "current": threshold_current,
    "floor": threshold_floor,
}


def dev_figures(files: list[Path], model: str) -> dict[str, Any]:
    """Per dataset: held-out-fold NLL per calibration rule; answered, coverage and accuracy per rule pair."""
    from sklearn.model_selection import KFold

    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for path in files:
        dataset, arrays = path.name.split("-")[0], np.load(path)
        logits, labels = arrays[f"{model}_validation"].astype(np.float64), arrays["y_validation"]
        for shuffle in range(SHUFFLES):
            for train, held in KFold(OUTER_FOLDS, shuffle=True, random_state=shuffle).split(logits):
                sums[dataset]["texts"] += len(held)
                for calibration_name, calibrate in CALIBRATIONS.items():
                    params = calibrate(logits[train], labels[train])
                    sums[dataset][f"nll {calibration_name}"] += nll(logits[held], labels[held], params) * len(held)
                    fitted, applied = probabilities(logits[train], params), probabilities(logits[held], params)
                    for threshold_name, choose in THRESHOLDS.items():
                        threshold, key = choose(fitted, labels[train]), f"{calibration_name}/{threshold_name}"
                        if threshold is not None:
                            answered = applied.max(axis=1) >= threshold
                            sums[dataset][f"answered {key}"] += answered.sum()
                            sums[dataset][f"right {key}"] += (applied.argmax(axis=1) == labels[held])[answered].sum()
    result = {}
    for dataset, row in sums.items():
        texts = row["texts"]
        figures: dict[str, Any] = {f"nll_{name}": row[f"nll {name}"] / texts for name in CALIBRATIONS}
        for calibration_name in CALIBRATIONS:
            for threshold_name in THRESHOLDS:
                key = f"{calibration_name}/{threshold_name}"
                answered = row[f"answered {key}"]
                figures[key] = {
                    "answered": int(answered),
                    "coverage": answered / texts,
                    "accuracy": row[f"right {key}"] / answered if answered else None,
                }
        result[dataset] = figures
    return result


def test_figures(files: list[Path], model: str) -> dict[str, Any]:
    """Per cell, each rule fitted on the whole validation split and scored on test (report only)."""
    from gendistill.evaluation.calibration import expected_calibration_error, selective_scores, softmax

    result = {}
    for path in files:
        arrays = np.load(path)
        logits, labels = arrays[f"{model}_validation"].astype(np.float64), arrays["y_validation"]
        test_logits, test_labels = arrays[f"{model}_test"].astype(np.float64), arrays["y_test"]
        cell: dict[str, Any] = {"ece_before": expected_calibration_error(softmax(test_logits), test_labels)}
        for calibration_name, calibrate in CALIBRATIONS.items():
            params = calibrate(logits, labels)
            held, test = probabilities(logits, params), probabilities(test_logits, params)
            cell[calibration_name] = {
                "temperature": params[0],
                "largest_bias": float(np.abs(params[1]).max()),
                "accuracy": float((test.argmax(axis=1) == test_labels).mean()),
                "ece_after": expected_calibration_error(test, test_labels),
            }
            for threshold_name, choose in THRESHOLDS.items():
                threshold = choose(held, labels)
                coverage, accuracy = selective_scores(test, test_labels, threshold) if threshold else (None, None)
                cell[calibration_name][threshold_name] = {
                    "threshold": threshold,
                    "answered_heldout": int((held.max(axis=1) >= threshold).sum()) if threshold else 0,
                    "coverage_test": coverage,
                    "accuracy_test": accuracy,
                }
        result[path.stem] = cell
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="a benchmarks/calibration.py --cache folder")
    parser.add_argument("--logits", type=Path, required=True, help="where the per-cell logits are kept")
    parser.add_argument("--model", choices=("student", "baseline"), default="student")
    parser.add_argument("--test", action="store_true", help="also score each rule on test (report only)")
    args = parser.parse_args()
    files = dump_logits(args.cache, args.logits)
    summary: dict[str, Any] = {"dev": dev_figures(files, args.model)}
    if args.test:
        summary["test"] = test_figures(files, args.model)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
