"""`gendistill export` and `gendistill serve`: the deployment extras (onnx, onnxruntime, fastapi, uvicorn) are
loaded only when these commands run (gendistill.artifacts.extras)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gendistill.artifacts import extras
from gendistill.artifacts.calibration import CalibrationError, resolve_min_confidence
from gendistill.artifacts.export import export_onnx
from gendistill.artifacts.limits import (
    DEFAULT_FALLBACK_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
)
from gendistill.artifacts.resolve import MODEL_FILE
from gendistill.artifacts.web_export import export_web
from gendistill.artifacts.word_cache import DEFAULT_CACHE_BYTES
from gendistill.cli.app import app, guard, writing_into
from gendistill.errors import ExportDirError, GendistillError, ModelLoadError

FORMATS = ("onnx", "web")


@app.command("export")
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory, or a student folder")],
    format_: Annotated[
        str, typer.Option("--format", help="onnx, or web: the ONNX export plus a static page running it in a browser")
    ] = "onnx",
    quantize: Annotated[
        str | None,
        typer.Option(
            "--quantize", help="int8: int8 weights, batch-independent answers (about 2.5x smaller); default: fp32"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder (default: RUN_DIR/export/onnx or onnx-int8)")
    ] = None,
) -> None:
    """Export the student to ONNX for torch-free serving (`Predictor`, `gendistill serve`), or for the browser (web)."""

    def action() -> None:
        if format_ not in FORMATS:
            raise GendistillError(f"--format {format_!r}: expected one of {', '.join(FORMATS)}")
        target = out or run_dir / "export" / (format_ if quantize is None else f"{format_}-{quantize}")
        writing_into(target, "the export folder")
        path = (export_web if format_ == "web" else export_onnx)(run_dir, target, quantize)
        size = (path / MODEL_FILE).stat().st_size
        typer.echo(f"exported: {path} ({MODEL_FILE} {size / 1e6:.2f} MB, {quantize or 'fp32'})")
        if format_ == "web":
            typer.echo(
                f"serve it with: python -m http.server --directory {path} 8000  (then open http://localhost:8000)"
            )

    guard(action)


@app.command("serve")
def serve(
    export_dir: Annotated[Path, typer.Argument(help="a folder made by gendistill export")],
    host: Annotated[str, typer.Option("--host", help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port")] = 8000,
    max_texts: Annotated[int, typer.Option("--max-texts", min=1, help="most texts per batch request")] = 256,
    max_chars: Annotated[int, typer.Option("--max-chars", min=1, help="most characters per text")] = 10_000,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="parallel prediction threads (default: the cores available)")
    ] = None,
    word_cache_bytes: Annotated[
        int,
        typer.Option("--word-cache-bytes", min=0, help="memory bound of the tokenizer's word cache (0: no cache)"),
    ] = DEFAULT_CACHE_BYTES,
    idle_timeout: Annotated[
        float,
        typer.Option(
            "--idle-timeout",
            min=0.001,
            help="seconds a connection may take to send a request head, after opening or after its last answer",
        ),
    ] = DEFAULT_IDLE_TIMEOUT,
    request_timeout: Annotated[
        float,
        typer.Option(
            "--request-timeout",
            min=0.001,
            help="seconds a request may take, from its head to its answer (a slow body included)",
        ),
    ] = DEFAULT_REQUEST_TIMEOUT,
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections", min=1, help="open connections at most; past it the one idle longest is closed"
        ),
    ] = DEFAULT_MAX_CONNECTIONS,
    min_confidence: Annotated[
        str | None,
        typer.Option(
            "--min-confidence",
            metavar="P|stored",
            help="defer (label null, deferred true) a text whose calibrated top probability is below P, in (0, 1); "
            "'stored': the threshold the run chose for evaluate.target_accuracy on held-out data",
        ),
    ] = None,
    fallback: Annotated[
        str | None,
        typer.Option(
            "--fallback",
            metavar="URL",
            help="a cascade: send the texts the student defers (needs --min-confidence) to this server, a gendistill "
            "one (gendistill serve-teacher RUN_DIR) or, with --fallback-model, an OpenAI-compatible LLM (URL/v1)",
        ),
    ] = None,
    fallback_model: Annotated[
        str | None,
        typer.Option(
            "--fallback-model",
            metavar="NAME",
            help="the --fallback is an OpenAI-compatible LLM serving NAME, asked as the llm teacher asks (zero-shot, "
            "the export's label names as classes)",
        ),
    ] = None,
    fallback_timeout: Annotated[
        float, typer.Option("--fallback-timeout", min=0.001, help="seconds to wait for the fallback's answer")
    ] = DEFAULT_FALLBACK_TIMEOUT,
    fallback_cache: Annotated[
        Path | None,
        typer.Option(
            "--fallback-cache",
            help="folder for the LLM fallback's prompt state and request cache (default: a temporary folder)",
        ),
    ] = None,
) -> None:
    """Serve an ONNX export over HTTP: GET /health, GET /info, POST /predict, POST /predict/batch, and the Hugging
    Face text-classification protocol ({"inputs": ...} on POST /predict and POST /)."""

    def action() -> None:
        threshold = None
        if min_confidence is not None:
            try:
                threshold = resolve_min_confidence(min_confidence, export_dir)
            except CalibrationError as error:
                raise GendistillError(str(error)) from None
        if fallback is not None and threshold is None:
            raise GendistillError(
                "--fallback needs --min-confidence P|stored: without a threshold the student defers no text, so "
                "nothing would ever reach the fallback"
            )
        if fallback is None and (fallback_model is not None or fallback_cache is not None):
            raise GendistillError("--fallback-model and --fallback-cache need --fallback URL")
        server = extras.load("gendistill.artifacts.serve", "serve")
        uvicorn = extras.load("uvicorn", "serve")
        cascade = extras.load("gendistill.artifacts.cascade", "serve")
        try:
            predictor = server.Predictor(export_dir, threads=1)
        except ExportDirError as error:
            raise ModelLoadError(str(error)) from None
        if fallback is not None and predictor.multi_label:
            raise GendistillError(
                f"--fallback: {export_dir} is a multi-label export; a cascade answers one label per text, so it "
                "needs a single-label export"
            )
        backup = None
        if fallback is not None and fallback_model is not None:
            backup = extras.load("gendistill.artifacts.llm_fallback", "serve").LLMFallback(
                fallback,
                fallback_model,
                predictor.label_names,
                timeout=fallback_timeout,
                cache_dir=fallback_cache,
            )
        elif fallback is not None:
            backup = cascade.ServedFallback(fallback, predictor.label_names, timeout=fallback_timeout)
        del predictor
        try:
            app = server.create_app(
                export_dir,
                max_texts=max_texts,
                max_chars=max_chars,
                threads=threads,
                word_cache_bytes=word_cache_bytes,
                min_confidence=threshold,
                fallback=backup,
            )
        except ExportDirError as error:
            raise ModelLoadError(str(error)) from None
        except CalibrationError as error:
            raise GendistillError(str(error)) from None
        config = server.server_config(
            app,
            host=host,
            port=port,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            request_timeout=request_timeout,
        )
        uvicorn.Server(config).run()

    guard(action)


@app.command("serve-teacher")
def serve_teacher(
    run_dir: Annotated[Path, typer.Argument(help="a run directory with a trained teacher")],
    host: Annotated[str, typer.Option("--host", help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port")] = 8001,
    max_texts: Annotated[int, typer.Option("--max-texts", min=1, help="most texts per batch request")] = 256,
    max_chars: Annotated[int, typer.Option("--max-chars", min=1, help="most characters per text")] = 10_000,
) -> None:
    """Serve a run's teacher over HTTP (GET /health, GET /info, POST /predict/batch, the student server's JSON):
    the fallback of a cascade, `gendistill serve EXPORT --min-confidence P --fallback http://HOST:PORT`."""

    def action() -> None:
        teacher_server = extras.load("gendistill.artifacts.teacher_server", "serve")
        server = extras.load("gendistill.artifacts.serve", "serve")
        uvicorn = extras.load("uvicorn", "serve")
        teacher, labels, batch_size = teacher_server.load_run_teacher(run_dir)
        app = teacher_server.create_teacher_app(
            teacher, labels, batch_size=batch_size, max_texts=max_texts, max_chars=max_chars
        )
        uvicorn.Server(server.server_config(app, host=host, port=port)).run()

    guard(action)
