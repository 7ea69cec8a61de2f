"""Evaluation: measurements (accuracy, per-class metrics, throughput), the typed Report, report.md/html, plots."""
