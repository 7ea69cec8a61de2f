"""report.html: the report as one self-contained page (inline CSS, PNGs inlined as base64 data URIs, no scripts,
nothing fetched), so it can be mailed, attached to an issue or opened from an artifact store as a single file."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from gendistill.evaluation.report import (
    CALIBRATION_HEADER,
    CONFUSION_TABLE_LIMIT,
    SELECTIVE_HEADER,
    ModelRow,
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

STYLE = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #222;
       max-width: 1100px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 2px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: 0; }
.headline { font-size: 17px; font-weight: 600; background: #f3f6fb; padding: 10px 14px; border-radius: 6px; }
.warning { background: #fff4e0; border: 1px solid #f0b050; padding: 8px 14px; border-radius: 6px; }
table { border-collapse: collapse; margin: 10px 0; }
th, td { border: 1px solid #ddd; padding: 4px 9px; text-align: right; }
th { background: #f5f5f5; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 10px 0; }
.muted { color: #777; font-size: 12px; }
#training td:nth-child(2), #training th:nth-child(2) { text-align: left; }
"""


def _table(header: list[str], rows: list[list[str]], table_id: str) -> str:
    """A table from already-escaped cell HTML."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _shade(value: float) -> str:
    """A cell's background for a score in [0, 1]: red for 0, white for 1."""
    value = min(max(value, 0.0), 1.0)
    return f"background: hsl({int(120 * value)}, 70%, {int(97 - 22 * (1 - value))}%)"


def _mistake(share: float) -> str:
    """A confusion cell's background off the diagonal: the share of its true class that went there."""
    return f"background: rgba(214, 39, 40, {min(0.12 + 1.5 * share, 0.85):.2f})"


def _image(root: Path, report: Report, name: str, alt: str) -> str:
    relative = report.plots.get(name)
    if relative is None or not (root / relative).is_file():
        return ""
    data = base64.b64encode((root / relative).read_bytes()).decode("ascii")
    return f'<img id="plot-{name}" alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _summary(report: Report) -> str:
    multi = report.multi_label
    scores = ["micro-F1", "macro-F1", "subset accuracy", "Hamming loss"] if multi else ["accuracy", "macro-F1"]
    header = ["model", *scores, "agreement with teacher", "params", "size (bytes)"]
    header += ["examples/s (median)", "p10–p90", "fastest / slowest pass"]
    rows = []
    for name, row in report.models():
        values = (
            [_pct(row.micro_f1), _pct(row.macro_f1), _pct(row.subset_accuracy), _pct(row.hamming_loss)]
            if multi
            else [_pct(row.accuracy), _pct(row.macro_f1)]
        )
        spread = "–" if row.throughput is None else f"{row.throughput.spread:.2f}x"
        if row.throughput is not None and row.throughput.wide:
            spread = f'<b style="color:#b35c00">{spread}</b>'
        rows.append(
            [
                escape(name),
                *values,
                _pct(row.teacher_agreement),
                _int(row.params),
                _int(row.size_bytes),
                _int(row.examples_per_s),
                throughput_range(row),
                spread,
            ]
        )
    return _table(header, rows, "summary")


def _per_class(report: Report) -> str:
    rows_by_model = [(name, row) for name, row in report.models() if row.per_class]
    if not rows_by_model:
        return ""
    header = ["class", "support"]
    for name, _ in rows_by_model:
        header += [f"{escape(name)} precision", f"{escape(name)} recall", f"{escape(name)} F1"]
    rows = []
    for label in report.label_names:
        support = next((r.per_class[label].support for _, r in rows_by_model if r.per_class and label in r.per_class))
        cells = [escape(label), str(support)]
        for _, row in rows_by_model:
            metrics = row.per_class.get(label) if row.per_class else None
            if metrics is None:
                cells += ["–", "–", "–"]
                continue
            for value in (metrics.precision, metrics.recall, metrics.f1):
                cells.append(f'<span style="{_shade(value)}; padding: 0 4px">{_pct(value)}</span>')
        rows.append(cells)
    return _table(header, rows, "per-class")


def _confusion_tables(report: Report) -> str:
    if not 0 < len(report.label_names) <= CONFUSION_TABLE_LIMIT:
        return '<p class="muted">Too many classes for tables: the matrices are in report.json.</p>'
    parts = []
    for name, row in report.models():
        if row.confusion_matrix is None:
            continue
        header = [f"{escape(name)}: true \\ predicted", *(escape(label) for label in report.label_names)]
        rows = []
        for i, (label, counts) in enumerate(zip(report.label_names, row.confusion_matrix, strict=True)):
            total = max(sum(counts), 1)
            cells = []
            for j, count in enumerate(counts):
                if i == j:
                    cells.append(f"<b>{count}</b>")
                else:  # a mistake: the larger its share of the true class, the redder
                    style = f' style="{_mistake(count / total)}; padding: 0 4px"' if count else ""
                    cells.append(f"<span{style}>{count}</span>")
            rows.append([f"<b>{escape(label)}</b>", *cells])
        parts.append(_table(header, rows, f"confusion-{name}"))
    return "".join(parts)


def _calibration(report: Report) -> str:
    rows = [[escape(name), *map(escape, cells)] for name, row in report.models() if (cells := calibration_cells(row))]
    if not rows:
        return ""
    note = (
        "<p>Temperature fitted on the held-out split (never the test set); ECE (15 equal-width bins) and multi-class "
        "Brier score on the test set, before → after.</p>"
    )
    return _table(CALIBRATION_HEADER, rows, "calibration") + note


def _selective(report: Report) -> str:
    rows = [[escape(name), *map(escape, cells)] for name, row in report.models() if (cells := selective_cells(row))]
    if not rows:
        return ""
    note = f"<p>{escape(selective_note(report))}; texts below it are deferred. The curves' data is in report.json.</p>"
    return _table(SELECTIVE_HEADER, rows, "selective") + note


def _training(report: Report) -> str:
    if not report.training:
        return ""
    rows = [
        [
            escape(name),
            escape(curve.loss or "–"),
            _int(curve.steps),
            _int(curve.epochs),
            "–" if curve.final_loss is None else f"{curve.final_loss:.4f}",
        ]
        for name, curve in report.training.items()
    ]
    return _table(["model", "loss", "steps", "epochs", "final loss"], rows, "training")


def _transfer(report: Report) -> str:
    transfer = report.transfer_set
    if not transfer.sources:
        return ""
    header = ["source", "n", "generated", "kept", "empty", "too short", "too long", "duplicate"]
    header.append("training copy")
    rows = []
    for source in transfer.sources:
        drops = source.drops
        label = source.type + (f" ({source.details['file']})" if source.details and "file" in source.details else "")
        rows.append(
            [
                escape(label),
                "all" if source.n is None else _int(source.n),
                _int(source.generated),
                _int(source.kept),
                *(_int(drops.get(key, 0)) for key in ("empty", "too_short", "too_long", "duplicate", "training_copy")),
            ]
        )
    notes = f"<p>Total transfer texts: {transfer.kept:,}.</p>"
    if transfer.curated:
        dropped = ", ".join(
            f"{escape(reason.replace('_', ' '))} {count:,}" for reason, count in transfer.curated.items()
        )
        notes += f"<p>Curation dropped {dropped}; the student trained on {_int(transfer.trained_on)}.</p>"
    if transfer.classes:
        classes = [[escape(name), _int(count)] for name, count in transfer.classes.items()]
        notes += "<p>Transfer texts by the teacher's label:</p>" + _table(
            ["class", "texts"], classes, "transfer-classes"
        )
    return _table(header, rows, "transfer") + notes


def _rounds(report: Report) -> str:
    rounds = report.rounds
    if rounds is None:
        return ""
    rows = [
        [
            f"{row.round}" + (" (kept)" if row.round == rounds.chosen_round else ""),
            _int(row.labels),
            _int(row.picked),
            f"{100 * row.agreement:.2f}%",
            "–" if row.accuracy is None else f"{100 * row.accuracy:.2f}%",
        ]
        for row in rounds.history
    ]
    header = ["round", "labels spent", "picked", "held-out agreement", "test accuracy"]
    note = (
        f"<p>Selection: {escape(rounds.select)}; the student's agreement with the teacher on {rounds.holdout:,} "
        f"held-out teacher labels chose the round kept (test accuracy is only reported). {escape(rounds.stopped)}. "
        f"{escape(usage_sentence(rounds))}</p>"
    )
    return _table(header, rows, "rounds") + note


def _stages(report: Report) -> str:
    if not report.stages:
        return ""
    rows = [
        [escape(name), escape(stage.status), "–" if stage.seconds is None else f"{stage.seconds:.1f}"]
        for name, stage in report.stages.items()
    ]
    note = '<p class="muted">reused: finished by an earlier invocation (its seconds are from then).</p>'
    return _table(["stage", "this run", "seconds"], rows, "stages") + note


def _model_note(row: ModelRow | None) -> str:
    if row is None or row.arch is None:
        return ""
    return f"{row.arch}, {row.init or '?'} init, vocabulary {_int(row.vocab_size)}"


def render_html(report: Report, root: Path) -> str:
    """The whole page; `root` is the folder the paths in `report.plots` are relative to."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>gendistill report: {escape(report.run_dir)}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>gendistill report</h1>",
        f'<p class="sub">{escape(report.run_dir)}</p>',
    ]
    headline = report.headline()
    if headline:
        parts.append(f'<p class="headline" id="headline">{escape(headline)}</p>')
    warnings = report.warnings()
    if warnings:
        items = "".join(f"<li>{escape(warning)}</li>" for warning in warnings)
        parts.append(f'<div class="warning" id="warnings"><b>Warning</b><ul>{items}</ul></div>')
    data = (
        f"Test set: {report.test_examples:,} examples. Labeled training examples: {report.train_examples:,}."
        if report.test_examples
        else "No test set: accuracy not measured."
    )
    parts += ["<h2>Models</h2>", f"<p>{escape(data)}</p>", _summary(report)]
    student_note = _model_note(report.student)
    if student_note:
        parts.append(f'<p class="muted">student: {escape(student_note)}</p>')
    parts.append(f"<p>{escape(speed_sentence(report))}</p>")
    parts.append(_image(root, report, "accuracy_size_speed", "accuracy against examples/s and size for each model"))
    per_class = _per_class(report)
    if per_class:
        parts += ["<h2>Per class (test set)</h2>", per_class]
        parts.append(_image(root, report, "per_class_f1", "F1 per class for each model"))
        parts += ["<h2>Confusion matrices</h2>"]
        parts.append(_image(root, report, "confusion", "confusion matrices"))
        parts.append(_confusion_tables(report))
    calibration = _calibration(report)
    if calibration:
        parts += ["<h2>Calibration</h2>", calibration]
        parts.append(_image(root, report, "reliability", "reliability diagrams before and after calibration"))
    selective = _selective(report)
    if selective:
        parts += ["<h2>Selective prediction</h2>", selective]
        parts.append(_image(root, report, "risk_coverage", "risk-coverage curves"))
    training = _training(report)
    if training:
        parts += ["<h2>Training</h2>", training]
        parts.append(_image(root, report, "training_loss", "training loss curves of the students"))
    transfer = _transfer(report)
    if transfer:
        parts += ["<h2>Transfer set</h2>", transfer]
    rounds = _rounds(report)
    if rounds:
        parts += ["<h2>Agreement rounds</h2>", rounds]
        parts.append(_image(root, report, "rounds", "held-out agreement and test accuracy against labels spent"))
    stages = _stages(report)
    if stages:
        parts += ["<h2>Stages</h2>", stages]
    if report.notes:
        parts += ["<h2>Notes</h2>", "<ul>", *(f"<li>{escape(note)}</li>" for note in report.notes), "</ul>"]
    parts.append("</body></html>")
    return "\n".join(part for part in parts if part) + "\n"
