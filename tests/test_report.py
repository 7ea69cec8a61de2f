"""The report: per-class scores and confusion matrices against scikit-learn, throughput as several timed passes
with a warning when they disagree, the one-line headline, and report.html: self-contained, with its tables and
plots, rendered by headless Chromium when it is installed."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from conftest import make_rows, make_tiny_config, write_jsonl
from sklearn.metrics import classification_report, confusion_matrix

import gendistill
from gendistill.artifacts.browser import find_chromium, run_headless
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
    """One tiny run (file source: no generator to train) with 3 timed passes per model and a validation set (15
    texts: what calibration and the confidence threshold are fitted on)."""
    root = tmp_path_factory.mktemp("report")
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["data"]["validation"] = str(write_jsonl(root / "validation.jsonl", make_rows(5, 3)))
    config["transfer"]["sources"] = [{"type": "file", "path": str(task_dir / "unlabeled.jsonl")}]
    config["evaluate"] = {"speed_examples": 16, "speed_passes": 3, "speed_min_seconds": 0.01, "target_accuracy": 0.5}
    return gendistill.run(build_config(config), root / "run")


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
    assert set(tiny_run.plots) == {
        "accuracy_size_speed",
        "confusion",
        "per_class_f1",
        "training_loss",
        "reliability",
        "risk_coverage",
    }
    for relative in tiny_run.plots.values():
        assert (run_dir / relative).read_bytes().startswith(PNG_MAGIC) and relative.startswith("plots/")
    assert set(tiny_run.training) == {"teacher", "student", "baseline_student"}  # no generator: a file source
    assert [p.epoch for p in tiny_run.training["student"].history] == [1, 2]
    assert tiny_run.training["student"].loss == "kl to the teacher's logits (+ 0.5 x cross-entropy on labeled texts)"
    assert tiny_run.training["student"].history[-1].step == tiny_run.training["student"].steps
    page = parse(tiny_run.html_path.read_text())
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 6
    for attrs in images:
        prefix, data = attrs["src"].split(",", 1)
        assert prefix == "data:image/png;base64"
        assert base64.b64decode(data) == (run_dir / tiny_run.plots[attrs["id"].removeprefix("plot-")]).read_bytes()
    tables = {attrs.get("id") for tag, attrs in page.tags if tag == "table"}
    assert {"summary", "per-class", "confusion-teacher", "confusion-student", "training", "stages"} <= tables
    assert {"calibration", "selective"} <= tables
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


CHROMIUM = find_chromium()
# added to a copy of the page only: report.html itself has no script
PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({id: i.id, complete: i.complete, width: i.naturalWidth}));
  const tables = [...document.querySelectorAll("table")].map(t => ({id: t.id, rows: t.rows.length}));
  document.body.setAttribute("data-probe", JSON.stringify({images, tables}));
});</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_report_html_renders_its_tables_and_images_in_headless_chromium(tiny_run, tmp_path):
    from matplotlib.image import imread

    page = tiny_run.html_path.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = run_headless("--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, dom.stdout[:2000]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(probe["images"]) == 6
    assert all(image["complete"] and image["width"] > 100 for image in probe["images"]), probe["images"]
    tables = {table["id"]: table["rows"] for table in probe["tables"]}
    assert tables["summary"] == 4 and tables["per-class"] == 1 + len(tiny_run.label_names)

    screenshot = tmp_path / "report.png"
    shot = run_headless(f"--screenshot={screenshot}", "--window-size=1200,3000", tiny_run.html_path.as_uri())
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


CALIBRATION_KEYS = {"ece_before", "ece_after", "brier_before", "brier_after", "method", "temperature", "fitted_on"}


def test_a_run_with_a_validation_set_calibrates_on_it_and_stores_calibration_json(tiny_run):
    from gendistill.artifacts.calibration import read_calibration
    from gendistill.evaluation.calibration import (
        accuracy_lower_bound,
        brier_score,
        choose_temperature,
        expected_calibration_error,
        selective_counts,
        selective_scores,
        softmax,
        threshold_for_accuracy,
    )
    from gendistill.stages.evaluate import THIN_MARGIN
    from gendistill.students.classifier import StudentClassifier

    run_dir = tiny_run.path.parent
    layout = RunLayout(run_dir)
    task = read_task(layout)
    validation, test = task.validation, task.test
    stored = json.loads((run_dir / "report.json").read_text())
    for name in ("teacher", "student", "baseline_student"):
        block = stored[name]["calibration"]
        assert set(block) >= CALIBRATION_KEYS, name
        assert block["method"] == "temperature" and block["fitted_on"] == "validation: 15 gold-labeled texts"
        assert all(block[key] is not None for key in CALIBRATION_KEYS), (name, block)
        selective = stored[name]["selective"]
        assert selective["target_accuracy"] == 0.5 and selective["curve"]["split"] == "test"
        assert selective["curve"]["coverage"][-1] == 1.0
    for name, folder in (("student", layout.final_student), ("baseline_student", layout.baseline_student)):
        student = StudentClassifier.from_pretrained(folder)
        row = getattr(tiny_run, name)
        # fitted on the validation split, measured on test: recomputed here from the student's own logits
        held = student.logits(validation.texts)
        choice = choose_temperature(held, np.asarray(validation.labels))
        temperature = choice.temperature
        assert row.calibration.temperature == pytest.approx(temperature, rel=1e-6)
        assert row.calibration.fitted_temperature == pytest.approx(choice.fitted, rel=1e-6)
        assert row.calibration.cv_nll_fitted == pytest.approx(choice.cv_nll_fitted)  # 15 texts: 5 folds of 3
        test_logits = student.logits(test.texts)
        gold = np.asarray(test.labels)
        assert row.calibration.ece_before == pytest.approx(expected_calibration_error(softmax(test_logits), gold))
        after = softmax(test_logits, temperature)
        assert row.calibration.ece_after == pytest.approx(expected_calibration_error(after, gold))
        assert row.calibration.brier_after == pytest.approx(brier_score(after, gold))
        threshold = threshold_for_accuracy(softmax(held, temperature), np.asarray(validation.labels), 0.5)
        assert row.selective.threshold == pytest.approx(threshold)
        assert row.selective.coverage_test == pytest.approx(selective_scores(after, gold, threshold)[0])
        answered, right = selective_counts(softmax(held, temperature), np.asarray(validation.labels), threshold)
        assert row.selective.answered_heldout == answered > 0
        assert row.selective.accuracy_heldout_lower == pytest.approx(accuracy_lower_bound(right, answered))
        # 15 held-out texts: the note says when the threshold rests on too few of them for its target
        thin = row.selective.accuracy_heldout_lower < 0.5 - THIN_MARGIN
        assert thin == any(note.startswith(f"{name}: its 0.5 confidence threshold rests on") for note in tiny_run.notes)
        calibration = read_calibration(folder)
        assert calibration is not None and student.calibration == calibration
        assert calibration.temperature == row.calibration.temperature
        assert calibration.min_confidence == row.selective.threshold and calibration.target_accuracy == 0.5
        assert calibration.fitted_on == "validation: 15 gold-labeled texts"
    markdown = tiny_run.markdown_path.read_text()
    assert "## Calibration" in markdown and "## Selective prediction" in markdown and " → " in markdown
    # the model card's numbers: the temperature, ECE and threshold of the report (the card is rewritten from it)
    card = StudentClassifier.from_pretrained(layout.final_student).write_card(run_dir / "card").read_text()
    assert f"T={tiny_run.student.calibration.temperature:.3f}" in card
    assert f"temperature: {tiny_run.student.calibration.temperature}" in card


def test_an_accuracy_guarantee_reruns_only_evaluate_and_stores_its_bounded_threshold(tiny_run, tmp_path):
    """evaluate.accuracy_guarantee on a copy of the tiny run: only evaluate reruns (the students' weights are the
    same files), each model's threshold is calibration.threshold_for_accuracy with that guarantee on its calibrated
    held-out probabilities, and calibration.json, report.md and the card sentence say which guarantee it was."""
    import shutil

    from gendistill.artifacts.calibration import read_calibration
    from gendistill.config import load_config
    from gendistill.evaluation.calibration import softmax, threshold_for_accuracy
    from gendistill.students.classifier import StudentClassifier

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.path.parent, run_dir)
    layout = RunLayout(run_dir)
    weights = sorted(layout.final_student.glob("*.safetensors"))
    before = {path: path.stat().st_mtime_ns for path in weights}
    # 15 held-out texts: a bound this loose is the one a threshold can pass here
    config = load_config(run_dir / "config.yaml", ["evaluate.accuracy_guarantee=0.6", "evaluate.target_accuracy=0.3"])
    report = gendistill.Run(config, run_dir).run(force=["changed"])
    assert weights and {path: path.stat().st_mtime_ns for path in weights} == before
    validation = read_task(layout).validation
    student = StudentClassifier.from_pretrained(layout.final_student)
    held = student.logits(validation.texts)
    temperature = report.student.calibration.temperature
    expected = threshold_for_accuracy(softmax(held, temperature), np.asarray(validation.labels), 0.3, guarantee=0.6)
    point = threshold_for_accuracy(softmax(held, temperature), np.asarray(validation.labels), 0.3)
    assert report.student.selective.guarantee == 0.6 and expected is not None
    assert report.student.selective.threshold == pytest.approx(expected) and expected >= point
    stored = read_calibration(layout.final_student)
    assert stored.accuracy_guarantee == 0.6 and stored.min_confidence == report.student.selective.threshold
    markdown = (run_dir / "report.md").read_text()
    assert "with probability 0.6" in markdown and "(p ≥ 0.6)" in markdown


def test_a_threshold_resting_on_few_held_out_texts_is_flagged_in_the_notes_the_table_and_the_card():
    """10 of 10 answered held-out texts right meet a 95% target, but bound the accuracy only at 79%: the report's
    note says so and what to do; 762 of 800 (95.3%, bound 94.1%) pass quietly, and a guaranteed threshold never
    gets the note. The table and the card carry the count and the bound."""
    from gendistill.evaluation.calibration import BOUND_PROBABILITY, accuracy_lower_bound
    from gendistill.evaluation.report import SELECTIVE_HEADER, CalibrationRow, SelectiveRow, selective_cells
    from gendistill.stages.evaluate import thin_threshold_note

    def row(right: int, answered: int, guarantee: float | None = None) -> SelectiveRow:
        return SelectiveRow(
            target_accuracy=0.95,
            guarantee=guarantee,
            threshold=0.97,
            coverage_heldout=answered / 1000,
            accuracy_heldout=right / answered,
            answered_heldout=answered,
            accuracy_heldout_lower=accuracy_lower_bound(right, answered),
            bound_probability=BOUND_PROBABILITY,
            coverage_test=0.05,
            accuracy_test=0.9,
        )

    note = thin_threshold_note("student", row(10, 10))
    assert note is not None and note.startswith("student: its 0.95 confidence threshold rests on 10 answered")
    assert "100.0% right" in note and "at least 79.4%" in note and "data.validation" in note
    assert thin_threshold_note("student", row(762, 800)) is None
    assert thin_threshold_note("student", row(10, 10, guarantee=0.6)) is None
    cells = dict(zip(SELECTIVE_HEADER[1:], selective_cells(ModelRow(selective=row(10, 10))), strict=True))
    assert cells["answered (held-out)"] == "10" and cells["accuracy lower bound % (p 0.9)"] == "79.4"
    card = ModelRow(
        calibration=CalibrationRow(method="temperature", temperature=1.2, fitted_on="validation: 1000 texts"),
        selective=row(10, 10),
    ).calibration_sentence()
    assert "on 10 answered held-out texts, whose accuracy is at least 79.4% with probability 0.9" in card


def test_without_a_held_out_split_calibration_is_not_fitted_and_says_why():
    from gendistill.evaluation.measure import calibrate_and_select

    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    row, selective = calibrate_and_select(
        held_out=None, test=(logits, labels), target_accuracy=0.9, fitted_on=None, not_fitted="no held-out split"
    )
    assert row.method is None and row.temperature is None and row.ece_after is None and row.brier_after is None
    assert row.ece_before is not None and row.brier_before is not None and row.note == "no held-out split"
    assert selective.threshold is None and selective.coverage_test is None and selective.curve is not None
    assert row.reliability.before and not row.reliability.after


def test_a_temperature_that_does_not_survive_cross_validation_is_not_used_and_the_table_says_so():
    """A calibrated model's held-out split: the fit lands off 1 but loses to T = 1 in the folds, so T = 1 is
    stored, and the report's calibration cell names the fit it set aside; `evaluate.temperature: fitted`
    (cross_validated=False) uses the plain fit."""
    from gendistill.evaluation.calibration import choose_temperature, fit_temperature, softmax
    from gendistill.evaluation.measure import calibrate_and_select
    from gendistill.evaluation.report import calibration_cells

    rng = np.random.default_rng(0)
    for _ in range(50):  # a split where noise alone moved the fit: found by drawing, not hard-coded
        logits = rng.normal(0, 2, size=(80, 4))
        labels = (rng.random(80)[:, None] > np.cumsum(softmax(logits), axis=1)).sum(axis=1)
        if choose_temperature(logits, labels).kept_identity:
            break
    else:
        pytest.fail("no split of a calibrated model kept T = 1")
    test = (rng.normal(0, 2, size=(40, 4)), rng.integers(0, 4, 40))
    checked, _ = calibrate_and_select(held_out=(logits, labels), test=test, target_accuracy=0.9, fitted_on="v")
    fitted = fit_temperature(logits, labels)
    assert checked.temperature == 1.0 and checked.fitted_temperature == pytest.approx(fitted)
    assert checked.cv_nll_fitted >= checked.cv_nll_identity
    assert checked.ece_after == pytest.approx(checked.ece_before)  # T = 1: the probabilities are unchanged
    cell = calibration_cells(ModelRow(calibration=checked))[0]
    assert cell == f"temperature, T=1.000 (the fitted T={fitted:.3f} did not lower the cross-validated NLL)"
    plain, _ = calibrate_and_select(
        held_out=(logits, labels), test=test, target_accuracy=0.9, fitted_on="v", cross_validated=False
    )
    assert plain.temperature == pytest.approx(fitted) and plain.cv_nll_fitted is None
    assert calibration_cells(ModelRow(calibration=plain))[0] == f"temperature, T={fitted:.3f}"
    card = ModelRow(calibration=checked).calibration_sentence()
    assert card.startswith(f"Probabilities are the model's own (T=1.000: the temperature {fitted:.3f} fitted on the v")
    assert (
        ModelRow(calibration=plain)
        .calibration_sentence()
        .startswith(f"Probabilities are temperature-scaled (T={fitted:.3f}")
    )


def test_without_validation_the_rounds_holdout_calibrates_the_students_only_and_no_split_is_a_note(tmp_path):
    """The fallbacks of the held-out split: the agreement rounds' teacher-labeled slice calibrates the students (to
    agree with the teacher) but not the teacher; a run with neither says in the report why nothing was fitted."""
    from types import SimpleNamespace

    import pyarrow as pa
    import pyarrow.parquet as pq

    from gendistill.artifacts.calibration import read_calibration
    from gendistill.evaluation.calibration import choose_temperature
    from gendistill.stages.evaluate import calibrate, held_out_split

    rng = np.random.default_rng(0)
    layout = RunLayout(tmp_path)
    layout.rounds.mkdir(parents=True)
    layout.student.mkdir()
    teacher_logits = rng.normal(0, 2, size=(60, 3)).astype(np.float32)
    pq.write_table(
        pa.table({"text": [f"text {i}" for i in range(60)], "logits": teacher_logits.tolist()}),
        layout.rounds / "holdout.parquet",
    )
    config = build_config({"data": {"train": "x.jsonl"}, "teacher": {"model": "t"}})
    ctx = SimpleNamespace(layout=layout, records={"rounds": {"applies": True}}, config=config)
    task = SimpleNamespace(validation=None)
    held_out = held_out_split(ctx, task)
    assert held_out is not None and not held_out.gold and len(held_out.texts) == 60
    assert held_out.description == "rounds holdout: 60 held-out pool texts labeled by the teacher"
    assert held_out.labels.tolist() == teacher_logits.argmax(axis=1).tolist()

    student_logits = {text: rng.normal(0, 4, size=3) for text in held_out.texts}
    logits_of = {
        "teacher": lambda texts: pytest.fail("the teacher is never run on its own labels"),
        "student": lambda texts: np.stack([student_logits[text] for text in texts]),
    }
    report = Report(teacher=ModelRow(), student=ModelRow())
    notes = calibrate(ctx, report, held_out, logits_of, {}, None)
    assert report.teacher.calibration.method is None
    assert report.teacher.calibration.note == "not fitted: the held-out labels are the teacher's own"
    expected = choose_temperature(logits_of["student"](held_out.texts), held_out.labels).temperature
    assert report.student.calibration.temperature == pytest.approx(expected)
    assert read_calibration(layout.student).fitted_on == held_out.description
    assert any("calibrated to agree with the teacher" in note for note in notes)

    ctx.records = {"rounds": {"applies": False}}
    assert held_out_split(ctx, task) is None
    report = Report(teacher=ModelRow(), student=ModelRow())
    notes = calibrate(ctx, report, None, logits_of, {}, None)
    assert read_calibration(layout.student) is None  # the stale file of the earlier fit is gone
    assert report.student.calibration.method is None and "data.validation" in report.student.calibration.note
    assert any(note.startswith("calibration not fitted: the run has no held-out split") for note in notes)


def test_a_temperature_fitted_on_a_perfectly_predicted_split_is_flagged(tmp_path):
    """Held-out logits that are all right drive T down (sharper is always better there): the report says the fit
    is unreliable instead of presenting it as a calibration."""
    from types import SimpleNamespace

    from gendistill.stages.evaluate import HeldOut, calibrate

    layout = RunLayout(tmp_path)
    layout.student.mkdir(parents=True)
    labels = np.array([0, 1, 2] * 10)
    logits = np.eye(3)[labels] * 5.0  # always right, with a margin
    config = build_config({"data": {"train": "x.jsonl"}, "teacher": {"model": "t"}})
    ctx = SimpleNamespace(layout=layout, records={}, config=config)
    held_out = HeldOut([f"t{i}" for i in range(30)], labels, "validation: 30 gold-labeled texts", gold=True)
    report = Report(student=ModelRow())
    notes = calibrate(ctx, report, held_out, {"student": lambda texts: logits}, {}, None)
    assert report.student.calibration.temperature < 0.5  # sharpened: lower NLL all the way down
    flagged = [note for note in notes if note.startswith("student: the fitted temperature")]
    assert flagged and "every held-out text is predicted right" in flagged[0]


def test_an_export_of_the_run_carries_its_calibration_and_serves_the_stored_threshold(tiny_run, tmp_path):
    from gendistill.artifacts.calibration import read_calibration, resolve_min_confidence
    from gendistill.artifacts.export import export_onnx
    from gendistill.artifacts.inference import Predictor
    from gendistill.evaluation.calibration import softmax

    run_dir = tiny_run.path.parent
    stored = read_calibration(RunLayout(run_dir).final_student)
    export_dir = export_onnx(run_dir, tmp_path / "onnx")
    assert read_calibration(export_dir) == stored
    assert json.loads((export_dir / "metadata.json").read_text())["calibration"] == stored.to_dict()
    assert resolve_min_confidence("stored", export_dir) == tiny_run.student.selective.threshold
    predictor = Predictor(export_dir, threads=1)
    texts = read_task(RunLayout(run_dir)).test.texts
    np.testing.assert_allclose(
        predictor.predict_proba(texts), softmax(predictor.logits(texts), stored.temperature), atol=1e-6
    )
    card = (export_dir / "README.md").read_text()
    assert f"T={stored.temperature:.3f}" in card


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
