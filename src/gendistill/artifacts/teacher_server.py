"""`gendistill serve-teacher RUN_DIR`: the run's teacher over HTTP, answering the student server's JSON on GET
/health, GET /info (labels) and POST /predict/batch, so that it can be a cascade's fallback
(`gendistill serve EXPORT --min-confidence P --fallback URL`).

The teacher is loaded as the pipeline loads it (the run's config.yaml, `config.teacher.load(layout.teacher,
"cpu")`), so any teacher kind serves: a fine-tuned encoder, SetFit, or an llm teacher (which asks its own server).
Needs torch, unlike the student's server; the request handling (body limit, strict JSON, one-line JSON errors)
is the student server's own (artifacts.serve).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from gendistill.artifacts.serve import (
    BatchRequest,
    BatchResponse,
    BodyLimit,
    Prediction,
    RequestError,
    _check_content_type,
    default_max_body_bytes,
    install_error_handlers,
    parse_json,
)
from gendistill.config import load_config
from gendistill.errors import RunDirError
from gendistill.io import read_json
from gendistill.pipeline.layout import RunLayout
from gendistill.teachers.base import LoadedTeacher

ROUTES = "GET /health, GET /info, POST /predict/batch"


def load_run_teacher(run_dir: Path) -> tuple[LoadedTeacher, list[str], int]:
    """(the loaded teacher, its label names, its labeling batch size) of the run in `run_dir`; a RunDirError
    naming what is missing otherwise."""
    layout = RunLayout(Path(run_dir))
    for path, what in ((layout.config, "config.yaml"), (layout.label_names, "data/labels.json")):
        if not path.is_file():
            raise RunDirError(f"{run_dir}: no {what}; serve-teacher needs a run directory made by `gendistill run`")
    if not layout.teacher.is_dir():
        raise RunDirError(f"{layout.teacher}: missing; train the teacher first (gendistill train-teacher RUN_DIR)")
    config = load_config(layout.config)
    labels = read_json(layout.label_names)
    if _multi_label(layout):
        raise RunDirError(f"{run_dir}: a multi-label run; serve-teacher (a cascade's fallback) is single-label")
    return config.teacher.load(layout.teacher, "cpu"), labels, config.teacher.label_batch_size


def _multi_label(layout: RunLayout) -> bool:
    """Whether the run's labeled texts carry label lists (the data stage stores them as a list column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    train = layout.split("train")
    return train.is_file() and pa.types.is_list(pq.read_schema(train).field("label").type)


def create_teacher_app(
    teacher: LoadedTeacher, labels: list[str], *, batch_size: int = 64, max_texts: int = 256, max_chars: int = 10_000
) -> FastAPI:
    """The service for a loaded teacher: softmax probabilities of its logits, the top one as the label."""
    app = FastAPI(title="gendistill teacher", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=default_max_body_bytes(max_texts, max_chars))

    install_error_handlers(app, ROUTES)

    def answer_batch(content_type: str | None, body: bytes) -> BatchResponse:
        _check_content_type(content_type)
        try:
            request = BatchRequest.model_validate(parse_json(body, 4 * max_texts + 64))
        except ValueError as error:
            raise RequestError(422, f"invalid request: {' '.join(str(error).split())[:200]}") from None
        texts = request.texts
        if not texts:
            raise RequestError(400, "texts is empty: send at least one text")
        if len(texts) > max_texts or any(len(text) > max_chars for text in texts):
            raise RequestError(413, f"at most {max_texts} texts of {max_chars} characters per request")
        for index, text in enumerate(texts):
            if not text.strip():  # as the student's server: a label for no words means nothing
                raise RequestError(422, f"text {index} is empty or whitespace only: there is nothing to classify")
        logits = np.asarray(teacher.logits(texts, batch_size), dtype=np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = exp / exp.sum(axis=1, keepdims=True)
        return BatchResponse(
            predictions=[
                Prediction(
                    label=labels[int(row.argmax())],
                    score=float(row.max()),
                    probabilities={name: float(p) for name, p in zip(labels, row, strict=True)},
                )
                for row in probabilities
            ]
        )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict[str, Any]:
        return {"labels": labels, "model": "teacher", "limits": {"max_texts": max_texts, "max_chars": max_chars}}

    @app.post("/predict/batch", response_model=BatchResponse)
    async def predict_batch(request: Request) -> BatchResponse:
        body = await request.body()
        return await run_in_threadpool(answer_batch, request.headers.get("content-type"), body)

    return app
