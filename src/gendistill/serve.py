"""An HTTP service around an ONNX export: GET /health, GET /info, POST /predict, POST /predict/batch.

Torch-free like gendistill.inference (fastapi, pydantic, numpy, tokenizers, onnxruntime). Every error is JSON
{"error": "..."} (validation errors add "detail"), with 400 for an empty batch, 413 for too many or too long
texts (limits bound the work one request can cause), 422 for malformed bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictStr

from gendistill.inference import Predictor


class PredictRequest(BaseModel):
    text: StrictStr = Field(description="one text to classify")


class BatchRequest(BaseModel):
    texts: list[StrictStr] = Field(description="texts to classify")


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class BatchResponse(BaseModel):
    predictions: list[Prediction]


class RequestError(Exception):
    """A request the service refuses, with its HTTP status and a message that says what to change."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(
    predictor_dir: str | Path, max_texts: int = 256, max_chars: int = 10_000, threads: int | None = None
) -> FastAPI:
    """The service for the export in `predictor_dir`; loads the model once, at creation."""
    predictor = Predictor(predictor_dir, threads=threads)
    labels = predictor.label_names
    # a cheap upper bound on a legitimate body (JSON may escape a character as 6 bytes), checked before parsing
    max_body = max_texts * (6 * max_chars + 8) + 1024
    app = FastAPI(title="gendistill", description="A distilled student classifier (ONNX)", version="1")

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = list(error.errors())
        return JSONResponse({"error": _describe(errors), "detail": jsonable_encoder(errors)}, status_code=422)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body:
            return JSONResponse(
                {
                    "error": f"request body of {declared} bytes is larger than this service accepts "
                    f"({max_body}); send fewer or shorter texts"
                },
                status_code=413,
            )
        return await call_next(request)

    def check(texts: list[str]) -> None:
        if not texts:
            raise RequestError(400, "texts is empty: send at least one text")
        if len(texts) > max_texts:
            raise RequestError(413, f"too many texts: {len(texts)} > {max_texts} per request; split the batch")
        for index, text in enumerate(texts):
            if len(text) > max_chars:
                raise RequestError(413, f"text {index} has {len(text)} characters; the limit is {max_chars}")

    def predictions(texts: list[str]) -> list[Prediction]:
        probabilities = predictor.predict_proba(texts)
        return [
            Prediction(
                label=labels[int(row.argmax())],
                probabilities={name: float(p) for name, p in zip(labels, row, strict=True)},
            )
            for row in probabilities
        ]

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # the exporting machine's file paths mean nothing to a client and only reveal its layout
    public_metadata = {key: value for key, value in predictor.metadata.items() if key not in ("source", "run_dir")}

    @app.get("/info")
    def info() -> dict[str, Any]:
        return {
            "labels": labels,
            "metadata": public_metadata,
            "limits": {"max_texts": max_texts, "max_chars": max_chars},
        }

    @app.post("/predict", response_model=Prediction)
    def predict(request: PredictRequest) -> Prediction:
        check([request.text])
        return predictions([request.text])[0]

    @app.post("/predict/batch", response_model=BatchResponse)
    def predict_batch(request: BatchRequest) -> BatchResponse:
        check(request.texts)
        return BatchResponse(predictions=predictions(request.texts))

    return app
