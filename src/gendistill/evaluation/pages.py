"""Write a report where a user reads it: report.json with report.md and report.html beside it."""

from __future__ import annotations

from pathlib import Path

from gendistill.evaluation.html import render_html
from gendistill.evaluation.markdown import render_markdown
from gendistill.evaluation.report import Report
from gendistill.io import write_text


def write_report(report: Report, path: str | Path) -> None:
    """report.json and, beside it, report.md and report.html (which inlines the PNGs listed in `plots`)."""
    report.write_json(path)
    write_text(report.markdown_path, render_markdown(report))
    write_text(report.html_path, render_html(report, Path(path).parent))
