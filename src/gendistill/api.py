"""`GenDistillClassifier`: generation-distillation as a scikit-learn-style estimator, for users who hold their data
in Python (lists, numpy arrays, pandas Series, `datasets` columns) rather than in files and YAML.

    from gendistill import GenDistillClassifier

    clf = GenDistillClassifier(teacher="sentence-transformers/all-MiniLM-L6-v2", generator="scratch", student="bilstm")
    clf.fit(texts, labels, unlabeled=more_texts, eval=(test_texts, test_labels))
    clf.predict(["my parcel never came"]); clf.score(test_texts, test_labels); clf.report_.student.accuracy
    clf.push_to_hub("me/support-student")

It runs the very pipeline `gendistill run` runs, in a run directory (default runs/fit): `fit` writes the texts to
RUN_DIR/inputs/*.jsonl, builds a `RunConfig` from the arguments (validated with the same one-line errors as a YAML
config) and runs every stage that is not done. Fitting again reuses what the change does not touch (a new student
setting retrains only the students); fitting other data reruns everything. Two estimators fitted at once need two
run directories.

`predict` returns labels of the kind `fit` was given: class names for string labels, integers for integer labels.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

import gendistill.stages  # noqa: F401 - the estimator assembles the pipeline: registers every stage
from gendistill.artifacts.resolve import artifact_at
from gendistill.config import RunConfig, build_config
from gendistill.data.texts import as_labels, as_texts
from gendistill.errors import ConfigError, RunDirError
from gendistill.evaluation.report import Report
from gendistill.io import write_text
from gendistill.pipeline.runner import Run
from gendistill.students.classifier import StudentClassifier

SOURCE = "GenDistillClassifier"


def _section(value: Any, key: str) -> dict[str, Any]:
    """A config section from a name (`"gpt2"`, `"bilstm"`), a dict, or a pydantic section object."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {key: value}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return copy.deepcopy(value)
    raise TypeError(f"{SOURCE}: expected a name, a dict or a config object, got {type(value).__name__}")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` merged into `base`, section by section (dicts merge, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def _pair(value: Any, what: str) -> tuple[list[str], list[Any]]:
    """(texts, labels) from `eval=`/`validation=`: a pair of sequences."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{what} must be a pair (texts, labels), got {type(value).__name__}")
    texts = as_texts(value[0], f"{what} texts")
    return texts, as_labels(value[1], len(texts), f"{what} labels")


def _write_jsonl(path: Path, texts: list[str], labels: list[Any] | None = None) -> str:
    """Atomically write one JSON object per text (deterministic bytes: refitting the same data changes no key)."""
    rows = (
        ({"text": text} if labels is None else {"text": text, "label": label})
        for text, label in zip(texts, labels if labels is not None else [None] * len(texts), strict=True)
    )
    try:
        write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    except TypeError as error:  # a label json cannot hold (a float NaN is fine, the data stage names it)
        raise TypeError(f"labels must be class names (str) or integer ids ({error})") from None
    return str(path)


class GenDistillClassifier(ClassifierMixin, BaseEstimator):
    """Train a tiny student classifier from labeled texts by generation-distillation.

    Parameters (stored as given, scikit-learn style; checked when `fit` builds the run config):
        teacher: Hugging Face model id or folder of the encoder to fine-tune, or a dict of `teacher:` config keys
            (e.g. {"model": "...", "epochs": 5}).
        generator: "scratch" (a small GPT-2 trained from scratch), a causal LM id or folder, a dict of `generator:`
            keys, or None for no generated texts (then only `unlabeled` texts, if any, form the transfer set).
        student: an architecture name ("bilstm", "cnn", "bag") or a dict of `student:` keys.
        n_generated: texts to generate (after filtering) when `generator` is set and `transfer` is not given.
        transfer: explicit `transfer.sources` entries (default: one `generate` source of `n_generated` texts);
            the `unlabeled` texts given to `fit` are always added as a `file` source.
        label_names: class names for integer labels (label i is label_names[i]).
        run_dir: the run directory (default runs/fit).
        seed, device ("auto", "cpu", "cuda"), report_to (experiment trackers: "tensorboard", "mlflow", ...).
        settings: any other config keys, merged into the config section by section, e.g.
            {"evaluate": {"threads": 1}, "data": {"per_class": 40}}.

    Fitted attributes: `student_` (a StudentClassifier), `report_` (the typed Report of report.json), `config_`
    (the RunConfig), `run_dir_`, `classes_` (the values `predict` returns, in `predict_proba`'s column order) and
    `label_names_`.
    """

    def __init__(
        self,
        teacher: str | dict[str, Any] | None = None,
        generator: str | dict[str, Any] | None = "scratch",
        student: str | dict[str, Any] | None = "bilstm",
        *,
        n_generated: int = 2000,
        transfer: list[dict[str, Any]] | None = None,
        label_names: list[str] | None = None,
        run_dir: str | Path = "runs/fit",
        seed: int = 0,
        device: str = "auto",
        report_to: str | list[str] | None = None,
        settings: dict[str, Any] | None = None,
    ):
        self.teacher = teacher
        self.generator = generator
        self.student = student
        self.n_generated = n_generated
        self.transfer = transfer
        self.label_names = label_names
        self.run_dir = run_dir
        self.seed = seed
        self.device = device
        self.report_to = report_to
        self.settings = settings

    # ---- fitting -------------------------------------------------------------------------------------------------
    def build_config(
        self,
        inputs: dict[str, str],
    ) -> RunConfig:
        """The RunConfig `fit` runs, for input files already written (`inputs`: train, and optionally test,
        validation, unlabeled)."""
        if self.teacher is None:
            raise ConfigError(f"{SOURCE}: teacher= is required: a Hugging Face encoder id or a local model folder")
        sources = list(copy.deepcopy(self.transfer)) if self.transfer is not None else []
        if self.transfer is None and self.generator is not None:
            sources.append({"type": "generate", "n": self.n_generated})
        if "unlabeled" in inputs:
            sources.append({"type": "file", "path": inputs["unlabeled"]})
        data: dict[str, Any] = {"train": inputs["train"], "test": inputs.get("test")}
        if "validation" in inputs:
            data["validation"] = inputs["validation"]
        if self.label_names is not None:
            data["label_names"] = list(self.label_names)
        raw: dict[str, Any] = {
            "data": data,
            "teacher": _section(self.teacher, "model"),
            "transfer": {"sources": sources},
            "student": _section(self.student, "arch"),
            "seed": self.seed,
            "device": self.device,
            "report_to": self.report_to,
        }
        if self.generator is not None:
            raw["generator"] = _section(self.generator, "model")
        return build_config(_merge(raw, self.settings or {}), source=SOURCE)

    def fit(
        self,
        texts: Any,
        labels: Any,
        unlabeled: Any = None,
        eval: tuple[Any, Any] | None = None,  # shadows the builtin: the name users know for held-out data
        validation: tuple[Any, Any] | None = None,
    ) -> GenDistillClassifier:
        """Fine-tune the teacher on (texts, labels), build the transfer set (generated texts plus `unlabeled`),
        distill the student and evaluate it; returns self.

        `eval` = (texts, labels) is a held-out test set: it fills the report (and the model card) and is never
        used to choose a model. `validation` = (texts, labels) is for model selection (the students keep their best
        epoch on it). Without `eval`, the report has no accuracy."""
        train_texts = as_texts(texts, "texts")
        train_labels = as_labels(labels, len(train_texts))
        if not train_texts:
            raise ValueError("texts is empty: fit needs labeled examples")
        extra_texts = as_texts(unlabeled, "unlabeled") if unlabeled is not None else None
        run_dir = Path(self.run_dir)
        folder = run_dir / "inputs"
        inputs = {"train": _write_jsonl(folder / "train.jsonl", train_texts, train_labels)}
        for name, value in (("test", eval), ("validation", validation)):
            path = folder / f"{name}.jsonl"
            if value is None:
                path.unlink(missing_ok=True)
                continue
            split_texts, split_labels = _pair(value, "eval" if name == "test" else name)
            inputs[name] = _write_jsonl(path, split_texts, split_labels)
        if extra_texts is not None:
            inputs["unlabeled"] = _write_jsonl(folder / "unlabeled.jsonl", extra_texts)
        else:
            (folder / "unlabeled.jsonl").unlink(missing_ok=True)
        config = self.build_config(inputs)
        report = Run(config, run_dir).run(force=["changed"])  # a changed estimator reruns only what it affects
        if report is None:
            raise RunDirError(f"{run_dir}: the run finished without a report")
        self.config_ = config
        self.report_: Report = report
        self.run_dir_ = run_dir
        self.student_: StudentClassifier = StudentClassifier.from_pretrained(artifact_at(run_dir, ("run",)).folder)
        self.label_names_ = list(self.student_.label_names)
        integer = isinstance(train_labels[0], (int, np.integer)) and not isinstance(train_labels[0], bool)
        if not integer:
            values: list[Any] = list(self.label_names_)
        elif self.label_names is not None:
            values = list(range(len(self.label_names_)))
        else:
            values = [int(name) for name in self.label_names_]
        self.classes_ = np.asarray(values)
        self._value_of = dict(zip(self.label_names_, values, strict=True))
        return self

    # ---- predicting ----------------------------------------------------------------------------------------------
    def _fitted(self) -> StudentClassifier:
        check_is_fitted(self, "student_")
        return self.student_

    def predict(self, texts: Any) -> np.ndarray:
        """Labels for a batch of texts (a bare string is a TypeError: wrap one text as [text])."""
        names = self._fitted().predict(texts)
        return np.asarray([self._value_of[name] for name in names], dtype=self.classes_.dtype)

    def predict_proba(self, texts: Any) -> np.ndarray:
        """[texts, classes] probabilities, columns in `classes_` order."""
        return self._fitted().predict_proba(texts)

    # `score(texts, labels)` is ClassifierMixin's: accuracy of `predict` against the labels.

    # ---- sharing -------------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Save the student with a model card holding this fit's test metrics (load it with
        `gendistill.StudentClassifier.from_pretrained`)."""
        self._fitted().save_pretrained(directory, report=self.report_, config=self.config_)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload the student and its model card to the Hub repo `repo_id`; keyword arguments as
        `StudentClassifier.push_to_hub` (private, token, branch, commit_message, create_pr)."""
        return self._fitted().push_to_hub(repo_id, report=self.report_, config=self.config_, **kwargs)
