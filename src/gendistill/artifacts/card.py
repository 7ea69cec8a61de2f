"""Model cards: the README.md (YAML metadata + prose) that makes a student folder or an ONNX export a Hub repo.

The metadata follows the Hub's model-card spec: `library_name: gendistill`, `pipeline_tag: text-classification`,
tags, `datasets` (when the data came from the Hub), `metrics` and a `model-index` holding the student's accuracy and
macro-F1 exactly as report.json has them. A `gendistill:` block carries what the spec has no key for: the labels,
the teacher and its metrics (for comparison), the transfer set, size and speed. Every number comes from the run's
typed `Report` (report.json); a student saved without one gets a card that says it was not evaluated.

An export's card is written from its metadata.json plus the run's report.json and config.yaml when the run is
still there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCardData

from gendistill import progress
from gendistill.artifacts.parity import describe as describe_parity
from gendistill.config import RunConfig, load_config
from gendistill.errors import GendistillError
from gendistill.evaluation.report import ModelRow, Report
from gendistill.evaluation.report import count as _int
from gendistill.evaluation.report import pct as _pct
from gendistill.io import write_text
from gendistill.loading import looks_like_path
from gendistill.pipeline.layout import RunLayout

if TYPE_CHECKING:
    from gendistill.students.classifier import StudentClassifier

CARD_FILE = "README.md"
PLACEHOLDER_ID = "REPO_ID_OR_PATH"


@dataclass
class CardFacts:
    """What a card says about the model itself (from a student or from an export's metadata.json)."""

    fmt: str  # "safetensors" (a student folder) or "onnx" (an export)
    arch: str
    params: int | None
    label_names: list[str]
    max_length: int | None
    kind: str = "student"  # which row of report.json: student or baseline_student
    init: str | None = None
    size_bytes: int | None = None
    quantization: str | None = None
    extra_tags: list[str] = field(default_factory=list)
    parity: dict[str, Any] | None = None  # an export's parity record (artifacts.parity), from metadata.json


def own_metrics(facts: CardFacts) -> tuple[dict[str, Any], int] | None:
    """(accuracy and macro-F1 of the exported file itself, the test texts they were measured on), from its parity
    record; None for a student folder or an export without one. An int8 file's accuracy is its own, not the
    torch student's it came from."""
    parity = facts.parity or {}
    row = (parity.get("models") or {}).get(parity.get("shipped"))
    if not row or row.get("accuracy") is None:
        return None
    return row, int(parity.get("texts") or 0)


def plain(value: Any) -> Any:
    """`value` with every Enum replaced by its value, at any depth: the card's YAML must load with
    `yaml.safe_load` (an Enum would be dumped as a `!!python/object/apply` tag) and its prose must say `teacher`,
    not `EmbeddingInit.teacher`."""
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, dict):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


# What each transfer source adds, in the card's words (a source type not listed here is named as it is).
SOURCE_WORDS = {
    "generate": "texts a generator LM wrote",
    "llm": "texts an LLM wrote",
    "file": "unlabeled texts from a file",
    "augment": "augmented copies of the labeled texts",
    "retrieve": "texts retrieved from a corpus",
}


def student_facts(student: StudentClassifier, kind: str | None = None) -> CardFacts:
    return CardFacts(
        fmt="safetensors",
        arch=student.spec.arch,
        params=student.num_parameters,
        label_names=list(student.label_names),
        max_length=student.tokenizer.max_length,
        kind=kind or student.info.get("kind") or "student",
        init=plain(student.info.get("init")),
    )


def export_facts(metadata: dict[str, Any]) -> CardFacts:
    return CardFacts(
        fmt="onnx",
        arch=str(metadata.get("arch")),
        params=metadata.get("params"),
        label_names=list(metadata.get("label_names") or []),
        max_length=metadata.get("max_length"),
        kind=metadata.get("student_kind") or "student",
        init=plain((metadata.get("info") or {}).get("init")),
        size_bytes=metadata.get("model_bytes"),
        quantization=metadata.get("quantization"),
        extra_tags=["onnx"] + ([str(metadata["quantization"])] if metadata.get("quantization") else []),
        parity=metadata.get("parity"),
    )


def hub_dataset(config: RunConfig | None) -> str | None:
    """The Hub dataset id of `data.train` when it is `hf:NAME[:CONFIG][@SPLIT]`, else None (a local file)."""
    if config is None or not (config.data.train or "").startswith("hf:"):
        return None
    return config.data.train.removeprefix("hf:").partition("@")[0].partition(":")[0] or None


def teacher_name(config: RunConfig | None) -> str | None:
    """The teacher's Hub id, or the name of its local folder (a card must not publish the trainer's paths)."""
    if config is None:
        return None
    model = getattr(config.teacher, "model", None)
    if not model:
        return config.teacher.kind
    return Path(model).name if looks_like_path(model) or Path(model).exists() else model


def _row(report: Report | None, key: str) -> ModelRow | None:
    return getattr(report, key, None) if report is not None else None


def _metrics(row: ModelRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    fields = (
        "accuracy",
        "micro_f1",
        "macro_f1",
        "subset_accuracy",
        "hamming_loss",
        "params",
        "size_bytes",
        "examples_per_s",
        "teacher_agreement",
    )
    calibration = {"calibration": row.calibration_summary()} if row.calibration_summary() else {}
    return {**{name: getattr(row, name) for name in fields if getattr(row, name) is not None}, **calibration}


def metadata(
    facts: CardFacts, report: Report | None = None, config: RunConfig | None = None, model_name: str | None = None
) -> dict[str, Any]:
    """The card's YAML metadata as a dict (what `card_text` renders between the `---` lines)."""
    return _card_data(facts, report, config, model_name).to_dict()


def _card_data(
    facts: CardFacts, report: Report | None, config: RunConfig | None, model_name: str | None
) -> ModelCardData:
    dataset = hub_dataset(config)
    row = _row(report, facts.kind)
    own = own_metrics(facts)
    multi_label = report is not None and report.multi_label
    measured = own is not None or (row is not None and row.score(multi_label) is not None)
    results = []
    if measured:
        if own is not None:  # the exported file's own numbers, on the texts its parity was measured on
            scores, examples = own[0], own[1]
        else:
            assert row is not None and report is not None
            scores = {"accuracy": row.accuracy, "micro_f1": row.micro_f1, "macro_f1": row.macro_f1}
            examples = report.test_examples
        dataset_type = dataset or "custom"
        dataset_name = f"{dataset or 'held-out test set'} ({examples} examples)"
        for metric, value, name, metric_config in (
            ("accuracy", scores.get("accuracy"), "Accuracy", None),
            ("f1", scores.get("micro_f1"), "Micro F1", "micro"),
            ("f1", scores.get("macro_f1"), "Macro F1", "macro"),
        ):
            if value is not None:
                results.append(
                    EvalResult(
                        task_type="text-classification",
                        dataset_type=dataset_type,
                        dataset_name=dataset_name,
                        metric_type=metric,
                        metric_value=value,
                        metric_name=name,
                        metric_config=metric_config,
                    )
                )
    transfer = report.transfer_set if report is not None else None
    block: dict[str, Any] = {
        "format": facts.fmt,
        "kind": facts.kind,
        "arch": facts.arch,
        "init": facts.init,
        "params": facts.params,
        "max_length": facts.max_length,
        "labels": facts.label_names,
        "quantization": facts.quantization,
        "teacher": _drop_none({"model": teacher_name(config), **(_metrics(_row(report, "teacher")) or {})}) or None,
        "student": _metrics(row),
        "baseline_student": _metrics(_row(report, "baseline_student")) if facts.kind == "student" else None,
        "test_examples": report.test_examples if report is not None else None,
        "train_examples": report.train_examples if report is not None else None,
        "transfer_set": (
            {
                "kept": transfer.kept,
                "sources": [{"type": s.type, "n": s.n, "kept": s.kept} for s in transfer.sources],
            }
            if transfer is not None and transfer.sources
            else None
        ),
        "config_hash": report.config_hash if report is not None else None,
        "export_parity": facts.parity,
    }
    return ModelCardData(
        library_name="gendistill",
        pipeline_tag="text-classification",
        tags=sorted({"gendistill", "text-classification", "knowledge-distillation", facts.arch, *facts.extra_tags}),
        datasets=[dataset] if dataset else None,
        metrics=(["f1"] if multi_label else ["accuracy", "f1"]) if measured else None,
        model_name=(model_name or "gendistill-student") if results else None,
        eval_results=results or None,
        gendistill=plain(_drop_none(block)),
    )


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def card_text(
    facts: CardFacts,
    report: Report | None = None,
    config: RunConfig | None = None,
    repo_id: str | None = None,
) -> str:
    """README.md for a student folder or an ONNX export: YAML metadata, results, usage, intended use and limits."""
    name = repo_id.split("/")[-1] if repo_id else "gendistill-student"
    front = _card_data(facts, report, config, name).to_yaml()
    teacher = teacher_name(config)
    row = _row(report, facts.kind)
    where = repo_id or PLACEHOLDER_ID
    what = "ONNX export of a" if facts.fmt == "onnx" else "A"
    quantized = f" ({facts.quantization} weights)" if facts.quantization else ""
    transfer = report.transfer_set if report is not None else None
    multi_label = report is not None and report.multi_label
    answers = (
        f"It gives each text every one of its {len(facts.label_names)} labels that applies (multi-label, each label "
        "deciding at its own threshold): "
        if multi_label
        else f"It predicts one of {len(facts.label_names)} labels: "
    )
    lines = [
        f"# {name}",
        "",
        f"{what} {_int(facts.params)}-parameter `{facts.arch}` text classifier{quantized}, distilled with "
        f"gendistill from {_teacher_phrase(teacher, config)}{_transfer_phrase(transfer, config)}. "
        + answers
        + ", ".join(f"`{label}`" for label in facts.label_names)
        + ".",
        "",
        "## Results",
        "",
    ]
    headline = "micro-F1" if multi_label else "accuracy"
    evaluated = report is not None and bool(report.models()) and row is not None and row.score(multi_label) is not None
    if evaluated:
        assert report is not None
        lines += [
            f"On a held-out test set of {report.test_examples} examples (the report of the run that trained it; "
            f"{report.train_examples} labeled training examples):",
            "",
            f"| model | {headline} | macro-F1 | params | size (bytes) | examples/s (CPU) |",
            "|---|---|---|---|---|---|",
        ]
        this = " (torch; this file's source)" if facts.fmt == "onnx" else " (this model)"
        for key, model_row in report.models():
            marker = this if key == facts.kind else ""
            lines.append(
                f"| {key}{marker} | {_pct(model_row.score(multi_label))} | {_pct(model_row.macro_f1)} | "
                f"{_int(model_row.params)} | {_int(model_row.size_bytes)} | {_int(model_row.examples_per_s)} |"
            )
        threads = report.speed.threads
        lines += [
            "",
            f"{headline.capitalize()} and macro-F1 in percent. Speed: torch on the CPU"
            + (f" with {threads} thread(s)" if threads else "")
            + ", tokenization included; it varies from machine to machine."
            + (
                f" This file: {facts.quantization or 'fp32'} ONNX, {_int(facts.size_bytes)} bytes."
                if facts.fmt == "onnx"
                else ""
            ),
        ]
        lines += ["", row.calibration_sentence()] if row.calibration_sentence() else []
    if facts.parity:
        lines += [
            "" if evaluated else None,
            f"This file's own answers, measured at export on the run's first {facts.parity.get('texts')} test "
            "texts against the torch student it came from (accuracy and macro-F1 in percent):",
            "",
            *describe_parity(facts.parity),
        ]
    elif not evaluated:
        lines.append(
            "Not evaluated: this card was written without the run's report.json. Push from the run directory "
            "(`gendistill push RUN_DIR REPO_ID`) for a card with the test metrics."
        )
    if transfer is not None and transfer.sources:
        lines += [
            "",
            "## Transfer set",
            "",
            f"The student learnt from the teacher's soft labels on {transfer.kept:,} unlabeled transfer texts "
            "(plus the labeled ones):",
            "",
            "| source | n | kept |",
            "|---|---|---|",
        ]
        for source in transfer.sources:
            n = "all" if source.n is None else f"{source.n:,}"
            lines.append(f"| {source.type} | {n} | {source.kept:,} |")
    lines += ["", "## Usage", ""]
    if facts.fmt == "onnx":
        lines += [
            "```python",
            "# pip install 'gendistill[inference]'   (onnxruntime, tokenizers, numpy: no torch)",
            "from gendistill.artifacts.inference import Predictor",
            "",
            f'predictor = Predictor.from_pretrained("{where}")',
            'predictor.predict(["a text to classify"])',
            "```",
            "",
            f'Or from the shell: `gendistill predict {where} "a text to classify"`, or serve it over HTTP with '
            "`gendistill serve DOWNLOADED_FOLDER`.",
        ]
    else:
        lines += [
            "```python",
            "# pip install gendistill",
            "from gendistill import StudentClassifier",
            "",
            f'student = StudentClassifier.from_pretrained("{where}")',
            'student.predict(["a text to classify"])        # labels',
            'student.predict_proba(["a text to classify"])  # numpy [texts, labels]',
            "```",
        ]
    lines += [
        "",
        "## Intended use and limits",
        "",
        "- Built for one task: classifying texts like those it was trained on into the labels above. Texts from "
        "another domain, language or label set get confident but meaningless labels.",
        "- A tiny network: it is much faster and smaller than its teacher and usually somewhat less accurate; compare "
        "it with the teacher on the same test set before relying on it.",
        "- It learnt from the teacher"
        + (" and its transfer texts" if _transfer_types(transfer, config) else "")
        + ": it inherits the teacher's mistakes and any bias in its data. Check it on your own held-out data.",
        f"- Inputs are truncated to {facts.max_length} tokens." if facts.max_length else None,
        "- Not for decisions about people without human review.",
    ]
    if config is not None:
        student = config.student
        lines += [
            "",
            "## Training",
            "",
            f"- Teacher: `{teacher}` ({plain(config.teacher.kind)}), {config.teacher.how_trained}.",
            f"- Student: `{plain(student.arch)}`, init `{plain(student.init)}`, loss `{plain(student.loss)}`, "
            f"{student.epochs} epochs.",
            f"- Data: {_data_phrase(config, report)}.",
        ]
    body = "\n".join(line for line in lines if line is not None) + "\n"
    return f"---\n{front.strip()}\n---\n\n{body}"


def _teacher_phrase(teacher: str | None, config: RunConfig | None) -> str:
    """The teacher as the card names it, with how it was trained only when the config says."""
    name = f"a `{teacher}` teacher" if teacher else "a teacher"
    return f"{name} ({config.teacher.how_trained})" if config is not None else name


def _transfer_types(transfer: Any, config: RunConfig | None) -> list[str]:
    """The transfer sources that gave the student texts, from what ran: the report's transfer set when there is
    one (sources that kept no text left out), else the config's sources, else none (a card must not claim a
    generator that never ran)."""
    if transfer is not None:
        return [source.type for source in transfer.sources if source.kept]
    if config is not None:
        return [str(plain(source.type)) for source in config.transfer.sources]
    return []


def _transfer_phrase(transfer: Any, config: RunConfig | None) -> str:
    """What the student learnt from besides the labeled texts, in words (empty when nothing says)."""
    types = _transfer_types(transfer, config)
    if not types:
        return ", without a transfer set" if transfer is not None else ""
    kept = f"{transfer.kept:,} " if transfer is not None and transfer.kept else ""
    words = ", ".join(dict.fromkeys(SOURCE_WORDS.get(kind, kind) for kind in types))
    return f", on the teacher's soft labels of a transfer set of {kept}texts ({words})"


def _data_phrase(config: RunConfig, report: Report | None) -> str:
    """The labeled data by what it is, never by a local file name (a card must not publish the trainer's files)."""
    if config.data.zero_label:
        return "no labeled examples (a zero-label start: the classes were only named)"
    dataset = hub_dataset(config)
    parts = [f"the Hub dataset `{dataset}`" if dataset else "the trainer's own labeled examples"]
    if report is not None and report.train_examples:
        parts.append(f"{report.train_examples:,} labeled training examples")
    if config.data.per_class:
        parts.append(f"{config.data.per_class} per class")
    return ", ".join(parts)


def write_card(directory: str | Path, text: str) -> Path:
    path = Path(directory) / CARD_FILE
    write_text(path, text)
    return path


def read_run(run_dir: Path | None) -> tuple[Report | None, RunConfig | None]:
    """The run's report and config when `run_dir` holds them (either may be None: a card is still written)."""
    if run_dir is None:
        return None, None
    run = RunLayout(run_dir)
    report = config = None
    if run.report_json.is_file():
        try:
            report = Report.read(run.report_json)
        except (OSError, ValueError) as error:
            detail = str(error).splitlines()[0][:200]
            progress.warning(f"{run.report_json}: cannot read ({detail}); the model card has no metrics")
    if run.config.is_file():
        try:
            config = load_config(run.config)
        except GendistillError as error:
            progress.warning(f"{error}; the model card says nothing about the training config")
    return report, config


def write_export_card(directory: str | Path, export_metadata: dict[str, Any]) -> Path:
    """README.md for an ONNX export folder, from its metadata.json and the run it came from."""
    run_dir = export_metadata.get("run_dir")
    report, config = read_run(Path(run_dir) if run_dir else None)
    return write_card(directory, card_text(export_facts(export_metadata), report, config))
