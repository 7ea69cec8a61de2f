"""`gendistill export --format web`: the ONNX export plus what runs it in a browser, as one static folder.

The folder is the ONNX export (model.onnx, tokenizer.json, labels.json, metadata.json, calibration.json, README.md)
plus index.html (a demo page), gendistill.js (the ES module: `load(baseUrl)` -> predict / predictProba) and
onnxruntime-web's WebAssembly build at ONNXRUNTIME_WEB_VERSION. Those npm files are copied from the package's
tarball, fetched once with `npm pack` into a cache folder and checked against the registry's pinned integrity hash.
The module is renamed to onnxruntime-web.js: a `.mjs` file is served as application/octet-stream by servers that do
not know the extension (Python's http.server before 3.12 on some systems), and browsers refuse such a module.
gendistill.js tokenizes as the `tokenizers` library does for BertNormalizer + BertPreTokenizer + WordPiece or
WordLevel (the students' word vocabularies and BERT-style teachers); any other pipeline is refused here rather than
tokenized differently in the browser.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from gendistill.artifacts.export import export_onnx
from gendistill.artifacts.resolve import METADATA_FILE, TOKENIZER_FILE, artifact_at
from gendistill.errors import GendistillError
from gendistill.io import read_json, write_json

ONNXRUNTIME_WEB_VERSION = "1.31.1"
# npm's dist.integrity for onnxruntime-web-1.31.1.tgz (`npm view onnxruntime-web@1.31.1 dist.integrity`)
ONNXRUNTIME_WEB_INTEGRITY = (
    "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
)
# package file -> name in the export: the ES module with its wasm glue bundled in, and the one-thread-capable wasm
RUNTIME_FILES = {
    "package/dist/ort.wasm.bundle.min.mjs": "onnxruntime-web.js",
    "package/dist/ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
}
ASSETS = Path(__file__).parent / "web_assets"
WEB_FILES = ("index.html", "gendistill.js")
SUPPORTED_MODELS = ("WordPiece", "WordLevel")


def cache_dir() -> Path:
    """$GENDISTILL_WEB_CACHE, else $XDG_CACHE_HOME/gendistill/web (~/.cache/gendistill/web)."""
    if os.environ.get("GENDISTILL_WEB_CACHE"):
        return Path(os.environ["GENDISTILL_WEB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gendistill" / "web"


def _integrity_ok(path: Path) -> bool:
    digest = base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()
    return f"sha512-{digest}" == ONNXRUNTIME_WEB_INTEGRITY


def runtime_tarball() -> Path:
    """The pinned onnxruntime-web tarball from the cache, fetched with `npm pack` when missing (needs npm and the
    registry once); raises GendistillError saying how to provide it otherwise."""
    folder = cache_dir()
    tarball = folder / f"onnxruntime-web-{ONNXRUNTIME_WEB_VERSION}.tgz"
    if tarball.is_file() and _integrity_ok(tarball):
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise GendistillError(
            f"--format web needs onnxruntime-web {ONNXRUNTIME_WEB_VERSION}: install npm (Debian: apt-get install npm), "
            f"or put onnxruntime-web-{ONNXRUNTIME_WEB_VERSION}.tgz into {folder}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    command = [npm, "pack", f"onnxruntime-web@{ONNXRUNTIME_WEB_VERSION}", "--pack-destination", str(folder)]
    # offline, npm retries for minutes by default: one try with a 30 s timeout says so sooner
    command += ["--fetch-retries", "0", "--fetch-timeout", "30000"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        failure = done.stderr.strip()[-300:] if done.returncode != 0 or not tarball.is_file() else None
    except subprocess.TimeoutExpired:
        failure = "no answer in 300 s"
    if failure is not None:
        raise GendistillError(
            f"npm pack onnxruntime-web@{ONNXRUNTIME_WEB_VERSION} failed ({failure}); "
            f"is the npm registry reachable? Or put the tarball into {folder}"
        )
    if not _integrity_ok(tarball):
        tarball.unlink()
        raise GendistillError(f"{tarball}: does not match the pinned integrity hash; fetch it again")
    return tarball


def check_tokenizer(spec: dict[str, Any], where: Path) -> None:
    """Refuse a tokenizer pipeline that gendistill.js does not reproduce exactly."""
    normalizer, pre_tokenizer = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}
    model = (spec.get("model") or {}).get("type")
    problems = []
    if normalizer.get("type") != "BertNormalizer":
        problems.append(f"normalizer {normalizer.get('type')}")
    if pre_tokenizer.get("type") != "BertPreTokenizer":
        problems.append(f"pre-tokenizer {pre_tokenizer.get('type')}")
    if model not in SUPPORTED_MODELS:
        problems.append(f"model {model}")
    if spec.get("truncation") is not None or spec.get("padding") is not None:
        problems.append("truncation or padding set in tokenizer.json")
    for token in spec.get("added_tokens") or []:
        if token.get("normalized") or token.get("lstrip") or token.get("rstrip") or token.get("single_word"):
            problems.append(f"added token {token.get('content')!r} with normalized/lstrip/rstrip/single_word")
    if problems:
        raise GendistillError(
            f"{where}: the web export's tokenizer reproduces BertNormalizer + BertPreTokenizer + WordPiece/WordLevel "
            f"only; this one has {'; '.join(problems)}. Export with --format onnx and serve it with `gendistill serve`"
        )


def export_web(source: str | Path, out_dir: str | Path, quantize: str | None = None) -> Path:
    """The ONNX export of `source` at `out_dir`, plus index.html, gendistill.js and onnxruntime-web; returns
    out_dir. The tokenizer is checked and the runtime fetched (or found in the cache) before anything is exported;
    the folder is built beside `out_dir` and replaces it only once complete."""
    out_dir = Path(out_dir)
    student_dir = artifact_at(Path(source), ("run", "student")).folder
    check_tokenizer(read_json(student_dir / TOKENIZER_FILE), student_dir / TOKENIZER_FILE)
    tarball = runtime_tarball()
    if out_dir.exists() and not (
        out_dir.is_dir() and ((out_dir / METADATA_FILE).exists() or not any(out_dir.iterdir()))
    ):
        raise GendistillError(f"{out_dir}: exists and is not an export; choose another --out")
    staging = out_dir.with_name(f".{out_dir.name}.web")
    try:
        export_onnx(source, staging, quantize)
        with tarfile.open(tarball) as archive:
            for member, name in RUNTIME_FILES.items():
                source_file = archive.extractfile(member)
                if source_file is None:
                    raise GendistillError(f"{tarball}: {member} missing; delete the file to fetch it again")
                with source_file, open(staging / name, "wb") as target:
                    shutil.copyfileobj(source_file, target)
        for name in WEB_FILES:
            shutil.copyfile(ASSETS / name, staging / name)
        metadata = read_json(staging / METADATA_FILE)
        metadata["web"] = {
            "onnxruntime_web_version": ONNXRUNTIME_WEB_VERSION,
            "module": "gendistill.js",
            "page": "index.html",
        }
        write_json(staging / METADATA_FILE, metadata)
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
