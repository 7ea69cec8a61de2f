"""The web export: gendistill.js in headless Chromium gives the Python Predictor's token ids for every text, its
labels, and its probabilities within 1e-5 (fp32) or INT8_TOLERANCE (int8, where the browser's int8 kernels may round
differently from the CPU build's). Skips without chromium, or without onnxruntime-web in the cache and no npm
registry to fetch it from."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import train_tiny_student
from test_export import probe_texts
from typer.testing import CliRunner

from gendistill.artifacts.browser import find_chromium, run_page
from gendistill.artifacts.calibration import Calibration
from gendistill.artifacts.inference import Predictor
from gendistill.artifacts.web_export import (
    ASSETS,
    RUNTIME_FILES,
    WEB_FILES,
    check_tokenizer,
    export_web,
    runtime_tarball,
)
from gendistill.cli import app
from gendistill.errors import GendistillError

FP32_TOLERANCE = 1e-5
INT8_TOLERANCE = 1e-4

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)

# what the tokenizer must reproduce beyond plain ASCII: every BertNormalizer/BertPreTokenizer rule
TOKENIZER_TEXTS = [
    "Tabs\tand\nnewlines\r\nand  double  spaces",
    "Café naïve résumé ÉCOLE Ångström",
    "ΣΊΣΥΦΟΣ İstanbul straße ǅ",
    "中文字符 and 日本語 mixed 한국어",
    "emoji 🙂 and 🏳️‍🌈 flags",
    "control\x00\x07chars\u200band\ufeffformat\ufffd",
    "nbsp\u00a0thin\u2009ideographic\u3000space",
    "punct: «quoted» — dash… ¿qué? ¡sí! 「括弧」 $5+3=8 <tag> a^b `x` ~y |z|",
    "special [UNK] and [MASK][PAD]inside[CLS]words [mask]",
    "x" * 150,
    "match goal team rain storm recipe oven " * 8,
]
PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import { load } from "./fp32/gendistill.js";
let result = {};
try {
  const texts = await (await fetch("texts.json")).json();
  for (const name of ["fp32", "int8"]) {
    const model = await load(`./${name}/`);
    result[name] = {
      ids: model.tokenIds(texts.all),
      predictions: await model.predict(texts.words),
      proba: await model.predictProba(texts.words),
    };
  }
  try { await (await load("./fp32/")).predict(["fine", "  "]); result.empty = "accepted"; }
  catch (error) { result.empty = String(error); }
} catch (error) {
  result = { error: String(error.stack || error) };
}
await fetch("result", { method: "POST", body: JSON.stringify(result) });
</script>"""


@pytest.fixture(scope="module")
def runtime() -> Path:
    try:
        return runtime_tarball()
    except GendistillError as error:
        pytest.skip(f"onnxruntime-web unavailable: {error}")


@pytest.mark.parametrize(
    ("arch", "init", "variant"), [("bilstm", "teacher", "calibrated"), ("bag", "random", "multi-label")]
)
def test_browser_matches_the_python_predictor(runtime, tiny_teacher_dir, tmp_path, arch, init, variant):
    """A teacher-vocabulary BiLSTM with a calibration temperature, and a word-vocabulary bag read as multi-label
    (its logits as per-label sigmoids, each label at its own threshold)."""
    student, _ = train_tiny_student(arch, init, tiny_teacher_dir, max_length=32)
    if variant == "calibrated":
        student.calibration = Calibration(temperature=2.5)
    else:
        student.multi_label, student.thresholds = True, [0.3, 0.5, 0.7]
    student.save_pretrained(tmp_path / "student")
    site = tmp_path / "site"
    for name, quantize in (("fp32", None), ("int8", "int8")):
        export = export_web(tmp_path / "student", site / name, quantize)
        assert all((export / file).is_file() for file in (*WEB_FILES, "onnxruntime-web.js", "model.onnx"))
        assert json.loads((export / "metadata.json").read_text())["web"]["onnxruntime_web_version"]
    every = probe_texts() + TOKENIZER_TEXTS
    words = [text for text in every if text.strip()]
    (site / "texts.json").write_text(json.dumps({"all": every, "words": words}))
    (site / "probe.html").write_text(PAGE)

    answer = run_page(site, "probe.html")

    assert "error" not in answer, answer.get("error")
    assert "empty" in answer["empty"], answer["empty"]  # a blank text is refused, as by the Predictor
    for name, tolerance in (("fp32", FP32_TOLERANCE), ("int8", INT8_TOLERANCE)):
        predictor = Predictor(site / name, threads=1)
        assert answer[name]["ids"] == predictor.token_ids(every)
        key = "labels" if variant == "multi-label" else "label"
        assert [row[key] for row in answer[name]["predictions"]] == predictor.predict(words)
        gap = np.abs(np.asarray(answer[name]["proba"]) - predictor.predict_proba(words)).max()
        assert gap <= tolerance, (name, gap)
        first = answer[name]["predictions"][0]["probabilities"]
        assert list(first) == predictor.label_names
        if variant == "calibrated":
            assert predictor.temperature == 2.5 and abs(sum(first.values()) - 1) < 1e-6
        else:
            assert {len(row["labels"]) for row in answer[name]["predictions"]} != {1}  # not one label per text


def test_unsupported_tokenizer_is_refused_with_the_alternative(tmp_path):
    spec = {"normalizer": None, "pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE"}}
    with pytest.raises(GendistillError, match="--format onnx"):
        check_tokenizer(spec, tmp_path / "tokenizer.json")


def test_cli_web_export_page_loads_and_classifies(runtime, tiny_teacher_dir, tmp_path):
    """`gendistill export --format web`, then its demo page: loads the model, and a click writes the Predictor's
    label and one row per label."""
    student, _ = train_tiny_student("cnn", "random", tiny_teacher_dir, max_length=32)
    student.save_pretrained(tmp_path / "student")
    export = tmp_path / "web"
    done = CliRunner().invoke(app, ["export", str(tmp_path / "student"), "--format", "web", "--out", str(export)])
    assert done.exit_code == 0, done.output
    assert "python -m http.server" in done.output
    page = (export / "index.html").read_text()
    clicker = """<script type="module">
const wait = () => new Promise((done) => setTimeout(done, 50));
while (document.getElementById("classify").disabled && !/cannot/.test(status.textContent)) await wait();
document.getElementById("text").value = "rain storm forecast today";
document.getElementById("classify").click();
while (!document.getElementById("answer").textContent) await wait();
await fetch("result", { method: "POST", body: JSON.stringify({
  status: document.getElementById("status").textContent,
  answer: document.getElementById("answer").textContent,
  rows: document.getElementById("probabilities").rows.length,
}) });
</script></body>"""
    (export / "probe.html").write_text(page.replace("</body>", clicker))

    answer = run_page(export, "probe.html")

    predictor = Predictor(export, threads=1)
    assert answer["answer"] == f"→ {predictor.predict(['rain storm forecast today'])[0]}", answer
    assert answer["rows"] == len(predictor.label_names) and "running in this browser" in answer["status"]


TOKENIZER_PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import { Tokenizer } from "./gendistill.js";
let result = {};
try {
  const texts = await (await fetch("texts.json")).json();
  for (const name of %s) {
    const tokenizer = new Tokenizer(await (await fetch(`${name}.json`)).json());
    result[name] = texts.map((text) => tokenizer.encode(text));
  }
} catch (error) {
  result = { error: String(error.stack || error) };
}
await fetch("result", { method: "POST", body: JSON.stringify(result) });
</script>"""


def test_js_tokenizer_gives_the_library_ids_for_every_normalizer_setting(runtime, tmp_path):
    """WordPiece and word-level vocabularies trained on non-ASCII text (so most pieces are known, not [UNK]), under
    each BertNormalizer setting: the JS ids equal `tokenizers`' on adversarial texts."""
    from tokenizers import BertWordPieceTokenizer, Tokenizer, normalizers

    from gendistill.students.vocab import train_word_tokenizer

    corpus = [*TOKENIZER_TEXTS, *probe_texts()] * 3
    tokenizers: dict[str, Tokenizer] = {}
    for lowercase, strip_accents, chinese in ((True, None, True), (False, False, False), (False, True, True)):
        trained = BertWordPieceTokenizer(
            lowercase=lowercase, strip_accents=strip_accents, handle_chinese_chars=chinese, clean_text=chinese
        )
        trained.train_from_iterator(corpus, vocab_size=300, min_frequency=1)
        tokenizers[f"wordpiece-{lowercase}-{strip_accents}-{chinese}"] = trained._tokenizer
    words = train_word_tokenizer(corpus, 200)
    tokenizers["wordlevel"] = words
    cased = Tokenizer.from_str(words.to_str())
    cased.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=False)
    tokenizers["wordlevel-cased"] = cased
    site = tmp_path / "site"
    site.mkdir()
    with tarfile.open(runtime) as archive:  # gendistill.js imports the runtime even for its tokenizer alone
        for member, name in RUNTIME_FILES.items():
            (site / name).write_bytes(archive.extractfile(member).read())
    shutil.copyfile(ASSETS / "gendistill.js", site / "gendistill.js")
    for name, tokenizer in tokenizers.items():
        check_tokenizer(json.loads(tokenizer.to_str()), site / f"{name}.json")
        (site / f"{name}.json").write_text(tokenizer.to_str())
    (site / "texts.json").write_text(json.dumps(corpus[: len(TOKENIZER_TEXTS) + len(probe_texts())]))
    (site / "probe.html").write_text(TOKENIZER_PAGE % json.dumps(list(tokenizers)))

    answer = run_page(site, "probe.html")

    assert "error" not in answer, answer.get("error")
    texts = json.loads((site / "texts.json").read_text())
    for name, tokenizer in tokenizers.items():
        expected = [encoding.ids for encoding in tokenizer.encode_batch(texts, add_special_tokens=False)]
        unknown = tokenizer.token_to_id("[UNK]")
        assert sum(i != unknown for ids in expected for i in ids) > 100, name  # mostly known pieces
        for text, got, want in zip(texts, answer[name], expected, strict=True):
            assert got == want, (name, text)


def test_missing_runtime_without_npm_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GENDISTILL_WEB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr("gendistill.artifacts.web_export.shutil.which", lambda name: None)
    with pytest.raises(GendistillError, match=r"install npm.*onnxruntime-web-1\.31\.1\.tgz"):
        runtime_tarball()
