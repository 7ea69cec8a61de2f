"""The report's pictures as PNG files: confusion matrices, per-class F1 side by side, training loss curves,
accuracy against size and speed, reliability diagrams (before and after calibration) and risk-coverage curves.
report.html inlines them (gendistill.evaluation.html).

Figures are drawn on matplotlib's Agg canvas through the object API, never through pyplot: no display is needed and
the backend of a notebook that calls `gendistill.run` is left alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gendistill.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gendistill.evaluation.report import Report

COLORS = {"teacher": "#4c72b0", "student": "#dd8452", "baseline_student": "#55a868"}
ANNOTATE_LIMIT = 15  # classes: up to this many, confusion cells show their counts
TICK_LIMIT = 40  # classes: up to this many, axes name every class
BAR_LIMIT = 60  # classes: beyond this many, the F1 chart shows the ones the student does worst on
CELL_INCHES = 0.4  # a confusion cell: room for a count in 9-point type
LABEL_INCHES_PER_CHAR = 0.055  # 8-point tick labels; a 45-degree one needs about 0.7 of its length each way
MAX_LABEL_CHARS = 60  # a class name longer than this is cut (its full name is in the report's tables)


class MissingMatplotlib(ImportError):
    """matplotlib is not installed: the report is written without pictures."""


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingMatplotlib(
            "plots skipped: matplotlib is not installed (pip install matplotlib); report.html has the tables only"
        ) from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _short(label: str, width: int = 16) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def confusion_figure(report: Report) -> Figure | None:
    """One matrix per model, colored by the share of each true class (so a class with few examples still shows
    where its examples go), with the counts written in the cells when there are few classes."""
    rows = [(name, row) for name, row in report.models() if row.confusion_matrix is not None]
    if not rows:
        return None
    n = len(report.label_names)
    named = n <= TICK_LIMIT
    # the figure grows with the classes (a readable cell each) and with the longest name, which the axes show
    # whole: a cut name ("Business & Fina…") can be two classes at once
    longest = max((len(label) for label in report.label_names), default=0) if named else 0
    margin = min(longest, MAX_LABEL_CHARS) * LABEL_INCHES_PER_CHAR
    side = max(3.2, CELL_INCHES * n + 1.6) + margin
    figure = _figure(side * len(rows) + 1.0, side + 0.4)
    axes = figure.subplots(1, len(rows), squeeze=False)[0]
    image = None
    for axis, (name, row) in zip(axes, rows, strict=True):
        counts = row.confusion_matrix or []
        shares = [[count / max(sum(line), 1) for count in line] for line in counts]
        image = axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        accuracy = "" if row.accuracy is None else f" ({100 * row.accuracy:.1f}%)"
        axis.set_title(f"{name}{accuracy}")
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        if named:
            names = [_short(label, MAX_LABEL_CHARS) for label in report.label_names]
            axis.set_xticks(range(n), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
            axis.set_yticks(range(n), names, fontsize=8)
        if n <= ANNOTATE_LIMIT:
            for i, line in enumerate(counts):
                for j, count in enumerate(line):
                    color = "white" if shares[i][j] > 0.5 else "black"
                    axis.text(j, i, str(count), ha="center", va="center", color=color, fontsize=9)
    if image is not None:
        figure.colorbar(image, ax=list(axes), shrink=0.8, label="share of the true class")
    return figure


def per_class_f1_figure(report: Report) -> Figure | None:
    """Horizontal bars, one group per class, one bar per model: a class the student misses stands out."""
    rows = [(name, row) for name, row in report.models() if row.per_class]
    if not rows:
        return None
    labels = list(report.label_names)
    title = "F1 per class (test set)"
    if len(labels) > BAR_LIMIT:
        student = dict(rows)["student"] if "student" in dict(rows) else rows[0][1]
        labels = sorted(labels, key=lambda label: student.per_class[label].f1 if student.per_class else 0.0)
        labels = labels[:BAR_LIMIT]
        title += f": the {BAR_LIMIT} classes with the lowest student F1"
    height = min(max(2.5, 0.28 * len(labels) * len(rows) + 1.2), 30.0)
    figure = _figure(7.5, height)
    axis = figure.subplots()
    bar = 0.8 / len(rows)
    for k, (name, row) in enumerate(rows):
        scores = [row.per_class[label].f1 if row.per_class and label in row.per_class else 0.0 for label in labels]
        positions = [i + (k - (len(rows) - 1) / 2) * bar for i in range(len(labels))]
        axis.barh(positions, scores, height=bar, label=name, color=COLORS.get(name))
    axis.set_yticks(range(len(labels)), [_short(label, 24) for label in labels], fontsize=8)
    axis.invert_yaxis()  # the first class on top, as in the tables
    axis.set_xlim(0, 1)
    axis.set_xlabel("F1")
    axis.set_title(title)
    axis.grid(axis="x", alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return figure


def training_loss_figure(report: Report) -> Figure | None:
    """The students' training loss per epoch against optimizer steps (their losses differ in kind, so each has
    its own panel); validation accuracy on a second axis when there was a validation set."""
    curves = [(name, curve) for name, curve in report.training.items() if curve.history]
    if not curves:
        return None
    figure = _figure(5.0 * len(curves), 3.6)
    axes = figure.subplots(1, len(curves), squeeze=False)[0]
    for axis, (name, curve) in zip(axes, curves, strict=True):
        by_step = all(point.step is not None for point in curve.history)
        xs = [point.step if by_step else point.epoch for point in curve.history]
        axis.plot(xs, [point.loss for point in curve.history], marker="o", markersize=3, color=COLORS.get(name))
        axis.set_xlabel("optimizer step" if by_step else "epoch")
        axis.set_ylabel("training loss (epoch mean)")
        axis.set_title(f"{name}\n{curve.loss or ''}", fontsize=9)
        axis.grid(alpha=0.3)
        validation = [
            (x, point.validation) for x, point in zip(xs, curve.history, strict=True) if point.validation is not None
        ]
        if validation:
            twin = axis.twinx()
            twin.plot([x for x, _ in validation], [v for _, v in validation], linestyle="--", color="gray")
            twin.set_ylabel("validation accuracy", color="gray")
    return figure


def accuracy_size_speed_figure(report: Report) -> Figure | None:
    """Each model at (examples/s, accuracy), with its p10–p90 throughput as a horizontal bar and a marker whose
    area grows with its parameter count; without a test set the vertical axis is size on disk."""
    rows = [(name, row) for name, row in report.models() if row.examples_per_s]
    if not rows:
        return None
    by_accuracy = all(row.accuracy is not None for _, row in rows)
    figure = _figure(6.5, 4.2)
    axis = figure.subplots()
    largest = max((row.params or 1) for _, row in rows)
    for name, row in rows:
        y = 100 * (row.accuracy or 0) if by_accuracy else (row.size_bytes or 0) / 1e6
        x = row.examples_per_s or 0.0
        span: Any = None
        if row.throughput is not None:
            span = [[x - row.throughput.p10], [row.throughput.p90 - x]]
        area = 60 + 1400 * math.sqrt((row.params or 1) / largest)
        axis.errorbar(x, y, xerr=span, fmt="none", ecolor=COLORS.get(name, "gray"), capsize=4, alpha=0.8)
        axis.scatter([x], [y], s=area, color=COLORS.get(name), alpha=0.6, edgecolors="black", label=name)
        params = "?" if row.params is None else f"{row.params / 1e6:.2f}M params"
        size = "?" if row.size_bytes is None else f"{row.size_bytes / 1e6:.1f} MB"
        axis.annotate(f"{name}\n{params}, {size}", (x, y), textcoords="offset points", xytext=(10, -22), fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("examples/s on CPU (median; bar: p10–p90 of the timed passes)")
    axis.set_ylabel("test accuracy (%)" if by_accuracy else "size on disk (MB)")
    axis.set_title("accuracy vs speed vs size (marker area: parameters)" if by_accuracy else "size vs speed")
    axis.margins(x=0.35, y=0.25)
    axis.grid(alpha=0.3, which="both")
    return figure


def rounds_figure(report: Report) -> Figure | None:
    """Agreement rounds: held-out agreement with the teacher (what the rounds stop and choose on) and, when there
    is a test set, test accuracy, against teacher labels spent; the chosen round circled."""
    if report.rounds is None or not report.rounds.history:
        return None
    history = report.rounds.history
    figure = _figure(6.0, 3.8)
    axis = figure.subplots()
    labels = [row.labels for row in history]
    agreement = [100 * row.agreement for row in history]
    axis.plot(labels, agreement, marker="o", label="agreement with the teacher (held out)")
    if all(row.accuracy is not None for row in history):
        axis.plot(labels, [100 * (row.accuracy or 0) for row in history], marker="s", label="test accuracy")
    chosen = next((row for row in history if row.round == report.rounds.chosen_round), None)
    if chosen is not None:
        axis.scatter([chosen.labels], [100 * chosen.agreement], s=220, facecolors="none", edgecolors="black")
    for row in history:
        axis.annotate(f"r{row.round}", (row.labels, 100 * row.agreement), textcoords="offset points", xytext=(4, 4))
    axis.set_xlabel("teacher labels spent (transfer set, held-out slice, picks)")
    axis.set_ylabel("%")
    axis.set_title(f"agreement rounds ({report.rounds.select}); circled: the round kept")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def reliability_figure(report: Report) -> Figure | None:
    """One panel per model: accuracy against mean confidence per confidence bin on the test set, before and after
    calibration, beside the diagonal a calibrated model follows; marker area grows with the bin's texts."""
    rows = [(name, row) for name, row in report.models() if row.calibration and row.calibration.reliability.before]
    if not rows:
        return None
    figure = _figure(3.8 * len(rows), 3.9)
    axes = figure.subplots(1, len(rows), squeeze=False)[0]
    for axis, (name, row) in zip(axes, rows, strict=True):
        calibration = row.calibration
        assert calibration is not None
        axis.plot([0, 1], [0, 1], linestyle=":", color="gray", label="perfectly calibrated")
        after = f"after (T={calibration.temperature or 1:.2f})"
        for points, style, label, ece in (
            (calibration.reliability.before, "--", "before", calibration.ece_before),
            (calibration.reliability.after, "-", after, calibration.ece_after),
        ):
            if not points:
                continue
            total = sum(point.count for point in points)
            xs, ys = [point.confidence for point in points], [point.accuracy for point in points]
            text = label if ece is None else f"{label}, ECE {100 * ece:.1f}%"
            axis.plot(xs, ys, linestyle=style, marker="o", markersize=3, color=COLORS.get(name), label=text)
            axis.scatter(xs, ys, s=[8 + 300 * point.count / total for point in points], color=COLORS.get(name))
        axis.set_xlim(0, 1.02)
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("confidence (top probability)")
        axis.set_ylabel("accuracy")
        axis.set_title(f"{name}\n{calibration.fitted_on or 'not calibrated'}", fontsize=8)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper left")
    return figure


def risk_coverage_figure(report: Report) -> Figure | None:
    """Error rate of the answered texts against the share answered, most confident first, one line per model;
    each model's chosen threshold marked where it lands on test."""
    rows = [(name, row) for name, row in report.models() if row.selective and row.selective.curve]
    if not rows:
        return None
    figure = _figure(6.0, 4.0)
    axis = figure.subplots()
    for name, row in rows:
        selective = row.selective
        assert selective is not None and selective.curve is not None
        coverage, risk = selective.curve.coverage, selective.curve.risk
        axis.plot([100 * c for c in coverage], [100 * r for r in risk], color=COLORS.get(name), label=name)
        if selective.coverage_test is not None and selective.accuracy_test is not None:
            axis.scatter([100 * selective.coverage_test], [100 * (1 - selective.accuracy_test)], color=COLORS.get(name))
    target = rows[0][1].selective.target_accuracy if rows[0][1].selective else None
    if target is not None:
        axis.axhline(100 * (1 - target), linestyle=":", color="gray", label=f"target error {100 * (1 - target):g}%")
    axis.set_xlabel("coverage: texts answered (%), most confident first")
    axis.set_ylabel("error among the answered (%)")
    axis.set_title("risk-coverage (test set); dots: the threshold chosen on held-out")
    axis.set_xlim(0, 100)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


PLOTS = {
    "accuracy_size_speed": accuracy_size_speed_figure,
    "confusion": confusion_figure,
    "per_class_f1": per_class_f1_figure,
    "training_loss": training_loss_figure,
    "rounds": rounds_figure,
    "reliability": reliability_figure,
    "risk_coverage": risk_coverage_figure,
}


def write_plots(report: Report, directory: Path) -> dict[str, Path]:
    """Every plot the report has data for, as `directory/NAME.png` (atomic writes); returns name -> path.
    Raises MissingMatplotlib when matplotlib is absent."""
    paths = {}
    for name, draw in PLOTS.items():
        figure = draw(report)
        if figure is None:
            continue
        path = directory / f"{name}.png"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png")
        paths[name] = path
    return paths
