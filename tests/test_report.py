"""The report: per-class scores and confusion matrices against scikit-learn, throughput as several timed passes
with a warning when they disagree, the one-line headline, and report.html: self-contained, with its tables and
plots, rendered by headless Chromium when it is installed."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_config
from sklearn.metrics import classification_report, confusion_matrix

import gendistill
from gendistill.config import build_config
from gendistill.data.stored import read_task
from gendistill.evaluation.measure import per_class_metrics, timed_passes
from gendistill.evaluation.pages import write_report
from gendistill.evaluation.report import (
    MODEL_ROWS,
    ClassMetrics,
    ModelRow,
    Report,
    SpeedSettings,
    Throughput,
    TransferSet,
)
from gendistill.pipeline.layout import RunLayout

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, task_dir, tiny_teacher_dir) -> Report:
    """One tiny run (file source: no generator to train) with 3 timed passes per model."""
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"] = [{"type": "file", "path": str(task_dir / "unlabeled.jsonl")}]
    config["evaluate"] = {"speed_examples": 16, "speed_passes": 3, "speed_min_seconds": 0.01}
    return gendistill.run(build_config(config), tmp_path_factory.mktemp("report") / "run")


def assert_matches_scikit_learn(row_per_class: dict, gold: list[int], predicted: np.ndarray, names: list[str]):
    expected = classification_report(
        gold, predicted, labels=list(range(len(names))), target_names=names, output_dict=True, zero_division=0
    )
    assert list(row_per_class) == names
    for name in names:
        got = row_per_class[name]
        got = got if isinstance(got, dict) else got.model_dump()
        assert got["precision"] == pytest.approx(expected[name]["precision"])
        assert got["recall"] == pytest.approx(expected[name]["recall"])
        assert got["f1"] == pytest.approx(expected[name]["f1-score"])
        assert got["support"] == expected[name]["support"]


def test_per_class_metrics_match_scikit_learn_with_a_class_never_predicted_and_one_never_seen():
    names = ["billing", "delivery", "technical", "account"]
    gold = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]  # no 'account' in the test set
    predicted = np.array([0, 0, 1, 1, 1, 0, 1, 0, 3, 1])  # 'technical' is never predicted (recall 0)
    per_class, matrix = per_class_metrics(gold, predicted, names)
    assert_matches_scikit_learn(per_class, gold, predicted, names)
    assert per_class["technical"].recall == 0.0 and per_class["account"].support == 0
    assert matrix == confusion_matrix(gold, predicted, labels=[0, 1, 2, 3]).tolist()
    assert matrix[2] == [1, 2, 0, 1]  # rows are the true class


def test_a_run_reports_per_class_scores_that_match_scikit_learn_on_its_own_predictions(tiny_run):
    raw = json.loads(tiny_run.path.read_text())
    run_dir = tiny_run.path.parent
    task = read_task(RunLayout(run_dir))
    names = raw["label_names"]
    students = {name: gendistill.StudentClassifier.from_pretrained(run_dir / name) for name in MODEL_ROWS[1:]}
    teacher = gendistill.load_config(run_dir / "config.yaml").teacher.load(run_dir / "teacher", torch.device("cpu"))
    predictions = {"teacher": teacher.logits(task.test.texts, 64).argmax(axis=1)}
    predictions |= {name: s.logits(task.test.texts, 64).argmax(axis=1) for name, s in students.items()}
    for name, predicted in predictions.items():
        row = raw[name]
        assert_matches_scikit_learn(row["per_class"], task.test.labels, predicted, names)
        assert row["confusion_matrix"] == confusion_matrix(task.test.labels, predicted, labels=[0, 1, 2]).tolist()
        diagonal = sum(row["confusion_matrix"][i][i] for i in range(len(names)))
        assert diagonal / len(task.test) == pytest.approx(row["accuracy"])


def test_throughput_keeps_every_pass_with_median_and_spread(tiny_run):
    assert tiny_run.speed.passes == 3 and tiny_run.speed.threads >= 1 and tiny_run.speed.cpus >= 1
    for _, row in tiny_run.models():
        passes = row.throughput.passes
        assert len(passes) == 3
        assert row.examples_per_s == row.throughput.median == pytest.approx(np.median(passes))
        assert row.throughput.p10 == pytest.approx(np.percentile(passes, 10))
        assert row.throughput.p90 == pytest.approx(np.percentile(passes, 90))
        assert row.throughput.spread == pytest.approx(max(passes) / min(passes))
    ratios = tiny_run.ratios
    assert ratios["speed_student_over_teacher_min"] <= ratios["speed_student_over_teacher"]
    assert ratios["speed_student_over_teacher"] <= ratios["speed_student_over_teacher_max"]


def test_reports_and_transfer_summaries_from_before_n_kept_its_name_still_read(tmp_path):
    """Earlier versions wrote a source's `n` as `requested` (report.json, and transfer/summary.json, which the
    evaluate stage of an existing run directory reads)."""
    sources = [{"type": "generate", "requested": 40, "generated": 44, "kept": 40}, {"type": "file", "requested": None}]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"transfer_set": {"sources": sources, "kept": 40, "requested": 40}}))
    transfer = Report.read(path).transfer_set
    assert [source.n for source in transfer.sources] == [40, None] and transfer.n == 40
    assert "requested" not in json.dumps(Report.read(path).model_dump())
    assert TransferSet.model_validate({"sources": sources}).sources[0].n == 40


def test_timed_passes_take_turns_within_each_pass():
    calls = []
    predictors = {name: (lambda batch, n=name: calls.append((n, len(batch)))) for name in ("teacher", "student")}
    result = timed_passes(predictors, ["a text"] * 10, batch_size=4, passes=2)
    assert {name: len(values) for name, values in result.items()} == {"teacher": 2, "student": 2}
    warm_up = [("teacher", 4), ("student", 4)]
    one_pass = [("teacher", 4), ("teacher", 4), ("teacher", 2), ("student", 4), ("student", 4), ("student", 2)]
    assert calls == warm_up + one_pass + one_pass


def test_a_timed_pass_repeats_the_texts_until_it_has_run_long_enough():
    calls = []
    result = timed_passes({"fast": calls.append}, ["a text"] * 8, batch_size=4, passes=2, min_seconds=0.05)
    assert len(calls) > 1 + 2 * 2  # more than the warm-up batch and one round of 2 batches per pass
    assert all(value > 0 for value in result["fast"])


def small_report(student_passes: list[float], load_average: float = 0.5) -> Report:
    teacher = ModelRow(params=22_000_000, accuracy=0.965, throughput=Throughput.from_passes([100, 105, 110]))
    student = ModelRow(params=160_000, accuracy=0.935, throughput=Throughput.from_passes(student_passes))
    baseline = ModelRow(params=150_000, accuracy=0.765)
    for row in (teacher, student):
        row.examples_per_s = row.throughput.median
    return Report(
        label_names=["a", "b"],
        teacher=teacher,
        student=student,
        baseline_student=baseline,
        ratios={"params_teacher_over_student": 137.5, "speed_student_over_teacher": 40.2},
        speed=SpeedSettings(threads=2, cpus=2, load_average=load_average, passes=3),
    )


def test_the_headline_is_one_line_with_accuracies_params_and_speed():
    report = small_report([4000, 4100, 4200], load_average=2.9)  # this process's 2 threads and a little more
    assert report.headline() == (
        "student 93.5% (teacher 96.5%, labeled-only baseline 76.5%) at 1/138 of the teacher's params, 40x faster"
    )
    assert report.warnings() == []


def test_a_wide_spread_or_a_busy_machine_is_flagged_in_the_report_and_the_cli(capsys, tmp_path):
    from gendistill.cli.run import print_report

    report = small_report([459, 2239, 2100], load_average=9.2)
    assert report.student.throughput.spread == pytest.approx(2239 / 459) and report.student.throughput.wide
    warnings = report.warnings()
    assert any("student throughput varied 4.9x between its 3 timed passes (459 to 2,239" in w for w in warnings)
    assert any("busy while timing (load average 9.2 on 2 CPUs" in w for w in warnings)
    assert report.headline().endswith("40x faster (timing varied: see the report)")
    write_report(report, tmp_path / "report.json")
    assert "**Warning:** student throughput varied" in report.markdown_path.read_text()
    assert 'id="warnings"' in report.html_path.read_text()
    print_report(report)
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("warning: student throughput varied 4.9x") for line in lines)
    assert lines[-2].startswith("report: ") and lines[-1] == report.headline()


class _Page(HTMLParser):
    """The tags and attributes of a page, for checking what it would load."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_a_run_writes_report_html_with_its_plots_inlined_and_beside_it(tiny_run):
    run_dir = tiny_run.path.parent
    assert set(tiny_run.plots) == {"accuracy_size_speed", "confusion", "per_class_f1", "training_loss"}
    for relative in tiny_run.plots.values():
        assert (run_dir / relative).read_bytes().startswith(PNG_MAGIC) and relative.startswith("plots/")
    assert set(tiny_run.training) == {"teacher", "student", "baseline_student"}  # no generator: a file source
    assert [p.epoch for p in tiny_run.training["student"].history] == [1, 2]
    assert tiny_run.training["student"].loss == "kl to the teacher's logits (+ 0.5 x cross-entropy on labeled texts)"
    assert tiny_run.training["student"].history[-1].step == tiny_run.training["student"].steps
    page = parse(tiny_run.html_path.read_text())
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 4
    for attrs in images:
        prefix, data = attrs["src"].split(",", 1)
        assert prefix == "data:image/png;base64"
        assert base64.b64decode(data) == (run_dir / tiny_run.plots[attrs["id"].removeprefix("plot-")]).read_bytes()
    tables = {attrs.get("id") for tag, attrs in page.tags if tag == "table"}
    assert {"summary", "per-class", "confusion-teacher", "confusion-student", "training", "stages"} <= tables
    # self-contained: no script, no stylesheet link, nothing that points outside the file
    assert not [tag for tag, _ in page.tags if tag in {"script", "link", "iframe", "object"}]
    for _, attrs in page.tags:
        for key in ("src", "href"):
            assert attrs.get(key) is None or attrs[key].startswith("data:"), attrs


def test_label_names_are_escaped_in_html_and_markdown(tmp_path):
    report = small_report([4000, 4100, 4200])
    report.label_names = ["<script>x</script>", "a|b"]
    metrics = ClassMetrics(precision=1.0, recall=1.0, f1=1.0, support=1)
    report.student.per_class = {name: metrics for name in report.label_names}
    report.student.confusion_matrix = [[1, 0], [0, 1]]
    write_report(report, tmp_path / "report.json")
    html = report.html_path.read_text()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "| a\\|b |" in report.markdown_path.read_text()


def test_without_matplotlib_the_report_has_its_tables_and_a_note(tiny_run, tmp_path, monkeypatch):
    import sys

    from gendistill.evaluation import plots

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails, as when not installed
    with pytest.raises(plots.MissingMatplotlib, match="pip install matplotlib"):
        plots.write_plots(tiny_run, tmp_path / "plots")
    report = tiny_run.model_copy(update={"plots": {}})
    write_report(report, tmp_path / "report.json")
    assert "<img" not in report.html_path.read_text() and 'id="per-class"' in report.html_path.read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# added to a copy of the page only: report.html itself has no script
PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({id: i.id, complete: i.complete, width: i.naturalWidth}));
  const tables = [...document.querySelectorAll("table")].map(t => ({id: t.id, rows: t.rows.length}));
  document.body.setAttribute("data-probe", JSON.stringify({images, tables}));
});</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_report_html_renders_its_tables_and_images_in_headless_chromium(tiny_run, tmp_path):
    from matplotlib.image import imread

    page = tiny_run.html_path.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, dom.stdout[:2000]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(probe["images"]) == 4
    assert all(image["complete"] and image["width"] > 100 for image in probe["images"]), probe["images"]
    tables = {table["id"]: table["rows"] for table in probe["tables"]}
    assert tables["summary"] == 4 and tables["per-class"] == 1 + len(tiny_run.label_names)

    screenshot = tmp_path / "report.png"
    shot = chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1200,3000", tiny_run.html_path.as_uri())
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    pixels = (imread(screenshot)[..., :3] * 255).astype(np.uint8)
    assert pixels.shape[:2] == (3000, 1200)
    colors = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colors) > 200, f"only {len(colors)} colours: the page did not render its plots"
    assert pixels.std() > 20


def test_a_report_without_a_test_set_still_plots_size_vs_speed_and_losses(tmp_path):
    from gendistill.evaluation import plots
    from gendistill.evaluation.report import LossPoint, TrainingCurve

    report = small_report([4000, 4100, 4200])
    for _, row in report.models():
        row.accuracy = None
    report.baseline_student.throughput = Throughput.from_passes([3000, 3100, 3300])
    report.baseline_student.examples_per_s = 3100
    report.training = {
        "teacher": TrainingCurve(loss="cross-entropy", steps=80, final_loss=0.1),
        "student": TrainingCurve(loss="mse", steps=20, epochs=2, history=[LossPoint(epoch=1, step=10, loss=1.0)]),
    }
    paths = plots.write_plots(report, tmp_path / "plots")
    assert set(paths) == {"accuracy_size_speed", "training_loss"}
    report.plots = {name: str(path.relative_to(tmp_path)) for name, path in paths.items()}
    write_report(report, tmp_path / "report.json")
    page = parse(report.html_path.read_text())
    assert len([tag for tag, _ in page.tags if tag == "img"]) == 2
    assert report.headline().startswith("student (no test set) at 1/138 of the teacher's params")


def test_confusion_matrix_at_20_classes_names_every_class_in_full_inside_the_figure(tmp_path):
    from gendistill.evaluation import plots
    from gendistill.evaluation.report import ModelRow, Report

    names = [f"Business & Finance {i:02d} long name" for i in range(20)]
    matrix = [[5 if i == j else (1 if j == (i + 1) % 20 else 0) for j in range(20)] for i in range(20)]
    report = Report(
        label_names=names,
        teacher=ModelRow(kind="hf_encoder", accuracy=0.8, confusion_matrix=matrix),
        student=ModelRow(kind="student", accuracy=0.7, confusion_matrix=matrix),
    )
    figure = plots.confusion_figure(report)
    figure.savefig(tmp_path / "confusion.png")  # lays the figure out as write_plots does
    renderer = figure.canvas.get_renderer()
    box = figure.bbox
    width, height = figure.get_size_inches()
    assert width > 2 * 9.0 and height > 9.0  # larger than the old fixed cap: it grows with the classes
    for axis in figure.axes[:2]:  # the two matrices (the last axes is the colorbar)
        for ticks in (axis.get_xticklabels(), axis.get_yticklabels()):
            assert [tick.get_text() for tick in ticks] == names  # whole names, none cut with "…"
            for tick in ticks:
                extent = tick.get_window_extent(renderer)
                assert extent.x0 >= box.x0 - 1 and extent.y0 >= box.y0 - 1, tick.get_text()
                assert extent.x1 <= box.x1 + 1 and extent.y1 <= box.y1 + 1, tick.get_text()
        assert axis.get_xticklabels()[0].get_rotation() == 45
