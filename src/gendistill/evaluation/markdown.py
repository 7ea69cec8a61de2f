"""report.md: the report as Markdown (tables a terminal, an issue or a pull request shows as they are)."""

from __future__ import annotations

from gendistill.evaluation.report import (
    CALIBRATION_HEADER,
    CONFUSION_TABLE_LIMIT,
    SELECTIVE_HEADER,
    Report,
    calibration_cells,
    selective_cells,
    selective_note,
    speed_sentence,
    throughput_range,
    usage_sentence,
)
from gendistill.evaluation.report import count as _int
from gendistill.evaluation.report import pct as _pct


def _cell(text: str) -> str:
    """A label name inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _table(title: str, header: str, columns: int) -> list[str]:
    """The lines that open a titled section's table: blank line, heading, blank line, header row, separator."""
    return ["", f"## {title}", "", header, "|" + "---|" * columns]


def render_markdown(report: Report) -> str:
    """A human-readable report.md."""
    lines = [f"# gendistill report: {report.run_dir}", ""]
    headline = report.headline()
    if headline:
        lines += [f"**{headline}**", ""]
    lines += [
        f"Test set: {report.test_examples} examples. Labeled training examples: {report.train_examples}."
        if report.test_examples
        else "No test set: accuracy not measured.",
        "",
    ]
    multi = report.multi_label
    scores = "micro-F1 | macro-F1 | subset accuracy | Hamming loss" if multi else "accuracy | macro-F1"
    lines += [
        f"| model | {scores} | params | size (bytes) | examples/s (CPU, median) | p10–p90 |",
        "|---|" + "---|" * (scores.count("|") + 5),
    ]
    for name, row in report.models():
        values = (
            f"{_pct(row.micro_f1)} | {_pct(row.macro_f1)} | {_pct(row.subset_accuracy)} | {_pct(row.hamming_loss)}"
            if multi
            else f"{_pct(row.accuracy)} | {_pct(row.macro_f1)}"
        )
        lines.append(
            f"| {name} | {values} | {_int(row.params)} "
            f"| {_int(row.size_bytes)} | {_int(row.examples_per_s)} | {throughput_range(row)} |"
        )
    ratios = report.ratios
    if ratios:
        agreement = report.student.teacher_agreement if report.student else None
        lines += [
            "",
            f"Student vs teacher: {ratios.get('params_teacher_over_student', 0):.0f}x fewer parameters, "
            f"{ratios.get('speed_student_over_teacher', 0):.0f}x faster; agreement with the teacher on test: "
            f"{_pct(agreement)}%.",
        ]
    lines += ["", speed_sentence(report)]
    lines += [f"\n**Warning:** {warning}." for warning in report.warnings()]
    rows = [(name, row) for name, row in report.models() if row.per_class]
    if rows:
        header = " | ".join(f"{name} P / R / F1" for name, _ in rows)
        kind = "label" if report.multi_label else "class"
        lines += _table(f"Per {kind}", f"| {kind} | support | {header} |", 2 + len(rows))
        for label in report.label_names:
            cells = []
            for _, row in rows:
                metrics = row.per_class.get(label) if row.per_class else None
                cells.append(
                    "–"
                    if metrics is None
                    else f"{_pct(metrics.precision)} / {_pct(metrics.recall)} / {_pct(metrics.f1)}"
                )
            support = next((r.per_class[label].support for _, r in rows if r.per_class and label in r.per_class), 0)
            lines.append(f"| {_cell(label)} | {support} | {' | '.join(cells)} |")
    if 0 < len(report.label_names) <= CONFUSION_TABLE_LIMIT:
        for name, row in report.models():
            if row.confusion_matrix is None:
                continue
            names = [_cell(label) for label in report.label_names]
            title = f"Confusion matrix: {name} (rows: true class, columns: predicted)"
            lines += _table(title, f"| | {' | '.join(names)} |", 1 + len(names))
            for label, counts in zip(names, row.confusion_matrix, strict=True):
                lines.append(f"| **{label}** | {' | '.join(str(count) for count in counts)} |")
    thresholds = [(name, row) for name, row in report.models() if row.thresholds]
    if thresholds:
        header = " | ".join(name for name, _ in thresholds)
        lines += _table("Decision thresholds per label", f"| label | {header} |", 1 + len(thresholds))
        for index, label in enumerate(report.label_names):
            cells = " | ".join(f"{row.thresholds[index]:.2f}" for _, row in thresholds if row.thresholds)
            lines.append(f"| {_cell(label)} | {cells} |")
        fitted = {row.thresholds_fitted_on for _, row in thresholds}
        lines.append(
            "\nTuned per label for the best F1 on the validation split."
            if fitted == {"validation"}
            else "\n0.5 where no validation split was given to tune them on."
        )
    calibrated = [(name, cells) for name, row in report.models() if (cells := calibration_cells(row))]
    if calibrated:
        lines += _table("Calibration", f"| {' | '.join(CALIBRATION_HEADER)} |", len(CALIBRATION_HEADER))
        lines += [f"| {name} | {' | '.join(cells)} |" for name, cells in calibrated]
        lines.append(
            "\nTemperature fitted on the held-out split; ECE (15 equal-width bins) and multi-class Brier score on "
            "the test set, before → after. Reliability diagrams: plots/reliability.png."
        )
    selective = [(name, cells) for name, row in report.models() if (cells := selective_cells(row))]
    if selective:
        lines += _table("Selective prediction", f"| {' | '.join(SELECTIVE_HEADER)} |", len(SELECTIVE_HEADER))
        lines += [f"| {name} | {' | '.join(cells)} |" for name, cells in selective]
        lines.append(
            f"\n{selective_note(report)}; the rest are deferred. Risk-coverage curves: plots/risk_coverage.png (data "
            "in report.json)."
        )
    if report.training:
        lines += _table("Training", "| model | loss | steps | epochs | final loss |", 5)
        for name, curve in report.training.items():
            final = "–" if curve.final_loss is None else f"{curve.final_loss:.4f}"
            lines.append(f"| {name} | {curve.loss or '–'} | {_int(curve.steps)} | {_int(curve.epochs)} | {final} |")
    transfer = report.transfer_set
    if transfer.sources:
        header = "| source | n | generated | kept | empty | too short | too long | duplicate | training copy |"
        lines += _table("Transfer set", header, 9)
        for source in transfer.sources:
            drops = source.drops
            n = source.n if source.n is not None else "all"
            lines.append(
                f"| {source.type} | {n} | {source.generated} | {source.kept} | {drops.get('empty', 0)} "
                f"| {drops.get('too_short', 0)} | {drops.get('too_long', 0)} | {drops.get('duplicate', 0)} "
                f"| {drops.get('training_copy', 0)} |"
            )
        lines.append(f"\nTotal transfer texts: {transfer.kept}.")
        if transfer.curated:
            dropped = ", ".join(f"{reason.replace('_', ' ')} {count:,}" for reason, count in transfer.curated.items())
            lines.append(f"Curation dropped {dropped}; the student trained on {transfer.trained_on:,}.")
        if transfer.classes:
            classes = ", ".join(f"{name} {count:,}" for name, count in transfer.classes.items())
            lines.append(f"By the teacher's label: {classes}.")
    if report.rounds is not None:
        rounds = report.rounds
        lines += _table("Agreement rounds", "| round | labels spent | picked | held-out agreement | test accuracy |", 5)
        for row in rounds.history:
            accuracy = "–" if row.accuracy is None else f"{100 * row.accuracy:.2f}%"
            mark = " (kept)" if row.round == rounds.chosen_round else ""
            lines.append(
                f"| {row.round}{mark} | {row.labels:,} | {row.picked:,} | {100 * row.agreement:.2f}% | {accuracy} |"
            )
        lines.append(
            f"\nSelection: {rounds.select}; agreement on {rounds.holdout:,} held-out teacher labels decided. "
            f"{rounds.stopped}. {usage_sentence(rounds)}".rstrip()
        )
    if report.stages:
        lines += _table("Stages", "| stage | this run | seconds |", 3)
        for name, stage in report.stages.items():
            seconds = "–" if stage.seconds is None else f"{stage.seconds:.1f}"
            lines.append(f"| {name} | {stage.status} | {seconds} |")
        lines.append("\n'reused': finished by an earlier invocation (its seconds are from then).")
    for note in report.notes:
        lines.append(f"\nNote: {note}")
    return "\n".join(lines) + "\n"
