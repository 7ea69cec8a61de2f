"""`gendistill predict`: the student's label for each text, from a run directory, a student folder, an export, or a
Hub repo holding a student or an export. Every argument is one text (a text with spaces is one quoted argument)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gendistill.artifacts import extras
from gendistill.artifacts.resolve import resolve_artifact
from gendistill.cli.app import app, guard
from gendistill.data.texts import EmptyTextError, require_words
from gendistill.errors import ExportDirError, GendistillError, ModelLoadError
from gendistill.students.classifier import StudentClassifier


@app.command()
def predict(
    model_dir: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="a run directory, a student folder, an export folder, or a Hub repo id (user/name)"
        ),
    ],
    texts: Annotated[
        list[str] | None, typer.Argument(metavar="TEXT", help="texts to classify, one per argument")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", metavar="FILE", help="one text per line")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines with probabilities")] = False,
) -> None:
    """Print the student's label for each text."""

    def action() -> None:
        inputs = list(texts or [])
        if file is not None:
            try:
                inputs += [line.rstrip("\n") for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as error:
                raise GendistillError(f"{file}: cannot read ({error})") from None
        if not inputs:
            raise GendistillError("no texts: pass them as arguments or with --file")
        try:
            require_words(inputs, "texts")
        except EmptyTextError as error:
            raise GendistillError(str(error)) from None
        artifact = resolve_artifact(model_dir, "model")
        if artifact.kind == "export":  # the torch-free predictor
            inference = extras.load("gendistill.artifacts.inference", "inference")
            try:
                model: Any = inference.Predictor(artifact.folder)
            except ExportDirError as error:
                raise ModelLoadError(str(error)) from None
        else:
            model = StudentClassifier.from_pretrained(artifact.folder)
        probabilities = model.predict_proba(inputs)
        for text, row in zip(inputs, probabilities, strict=True):
            label = model.label_names[int(row.argmax())]
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "text": text,
                            "label": label,
                            "probabilities": dict(zip(model.label_names, map(float, row), strict=True)),
                        }
                    )
                )
            else:
                typer.echo(label)

    guard(action)
