"""Examples/s of a web export in headless Chromium (gendistill.js + onnxruntime-web, one wasm thread) beside the
Python Predictor (onnxruntime, one thread) on the same export and texts, measured in one run, tokenization included.

    python benchmarks/latency_web.py RUN_DIR [--quantize int8] [--texts 500] [--out benchmarks/results/latency]

RUN_DIR is a run directory (its test texts are timed) or a student folder (with --texts-file, one text per line).
The student is exported with `--format web` into a temporary folder. Per engine: examples/s at batch 1 (one text
per call) and at batch 64, after 10 warm-up calls, the faster of --repeat passes; and, for the browser, agreement of
its labels with the Predictor's and the largest probability difference on the timed texts. Writes <out>/<name>.json
and .md with the exact command, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

WARMUP_CALLS = 10
PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import { load } from "./web/gendistill.js";
const settings = await (await fetch("settings.json")).json();
let result = {};
try {
  const model = await load("./web/");
  const texts = settings.texts;
  for (let i = 0; i < %(warmup)d; i += 1) await model.predictProba([texts[i %% texts.length]]);
  for (const batch of [1, 64]) {
    let best = Infinity;
    for (let pass = 0; pass < settings.repeat; pass += 1) {
      const start = performance.now();
      for (let first = 0; first < texts.length; first += batch) {
        await model.predictProba(texts.slice(first, first + batch));
      }
      best = Math.min(best, (performance.now() - start) / 1000);
    }
    result[`batch_${batch}`] = texts.length / best;
  }
  result.proba = await model.predictProba(texts);
  result.predictions = (await model.predict(texts)).map((row) => row.labels ?? row.label);
  result.userAgent = navigator.userAgent;
} catch (error) {
  result = { error: String(error.stack || error) };
}
await fetch("result", { method: "POST", body: JSON.stringify(result) });
</script>"""


def timed_texts(source: Path, texts_file: Path | None, count: int) -> list[str]:
    from gendistill.artifacts import parity

    if texts_file is not None:
        texts = [line for line in texts_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        test_set = parity.run_test_set(source, limit=count)
        if test_set is None:
            sys.exit(f"error: {source} has no data/test.parquet; give --texts-file")
        texts = [text for text in test_set[0] if text.strip()]
    return (texts * -(-count // len(texts)))[:count]


def python_rate(predictor: Any, texts: list[str], batch: int, repeat: int) -> float:
    for i in range(WARMUP_CALLS):
        predictor.predict_proba([texts[i % len(texts)]])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for first in range(0, len(texts), batch):
            predictor.predict_proba(texts[first : first + batch], batch_size=64)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def run(source: Path, texts: list[str], quantize: str | None, repeat: int) -> dict[str, Any]:
    from gendistill.artifacts.browser import run_page
    from gendistill.artifacts.inference import Predictor
    from gendistill.artifacts.web_export import ONNXRUNTIME_WEB_VERSION, export_web

    with tempfile.TemporaryDirectory(prefix="latency-web-") as folder:
        site = Path(folder)
        export_web(source, site / "web", quantize)
        (site / "settings.json").write_text(json.dumps({"texts": texts, "repeat": repeat}))
        (site / "bench.html").write_text(PAGE % {"warmup": WARMUP_CALLS})
        predictor = Predictor(site / "web", threads=1)
        python = {f"batch_{batch}": python_rate(predictor, texts, batch, repeat) for batch in (1, 64)}
        browser = run_page(site, "bench.html", timeout=600)
        if "error" in browser:
            sys.exit(f"error: the browser failed: {browser['error']}")
        expected = predictor.predict(texts)
        gap = float(np.abs(np.asarray(browser.pop("proba")) - predictor.predict_proba(texts)).max())
        agreement = float(np.mean([a == b for a, b in zip(browser.pop("predictions"), expected, strict=True)]))
        metadata = predictor.metadata
    return {
        "source": str(source),
        "quantization": quantize or "fp32",
        "arch": metadata.get("arch"),
        "multi_label": bool(metadata.get("multi_label")),
        "texts": len(texts),
        "onnxruntime_web": ONNXRUNTIME_WEB_VERSION,
        "browser": browser.pop("userAgent"),
        "cpu": platform.processor() or platform.machine(),
        "results": {
            "python_predictor": python,
            "browser": {**browser, "label_agreement": agreement, "max_probability_diff": gap},
        },
        "command": shlex.join(sys.argv),
    }


def markdown(result: dict[str, Any]) -> str:
    python, browser = result["results"]["python_predictor"], result["results"]["browser"]
    return "\n".join(
        [
            f"`{result['command']}`: {result['arch']} {result['quantization']}, {result['texts']} texts, "
            "1 thread each; "
            f"onnxruntime-web {result['onnxruntime_web']} in {result['browser']}",
            "",
            "| engine | examples/s batch 1 | examples/s batch 64 | labels equal to Python's | largest probability gap"
            " |",
            "|---|---|---|---|---|",
            f"| Python Predictor (onnxruntime) | {python['batch_1']:,.0f} | {python['batch_64']:,.0f} | – | – |",
            f"| browser (gendistill.js, wasm) | {browser['batch_1']:,.0f} | {browser['batch_64']:,.0f} | "
            f"{100 * browser['label_agreement']:.2f}% | {browser['max_probability_diff']:.1e} |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a run directory or a student folder")
    parser.add_argument("--quantize", choices=["int8"], default=None, help="time the int8 export (default fp32)")
    parser.add_argument("--texts", type=int, default=500, help="texts per measurement (cycled)")
    parser.add_argument("--texts-file", type=Path, default=None, help="one text per line (default: the run's test set)")
    parser.add_argument("--repeat", type=int, default=1, help="timing passes; the fastest is kept")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latency")
    parser.add_argument("--name", default="", help="file name stem: web-NAME-fp32.json (default: the run dir's name)")
    args = parser.parse_args()
    result = run(args.source, timed_texts(args.source, args.texts_file, args.texts), args.quantize, args.repeat)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"web-{args.name or args.source.resolve().name}-{result['quantization']}"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / f"{name}.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
