"""Typed configuration: one section per stage, loaded from YAML with `--set` overrides. Transfer sources and
teachers bring their own config classes (gendistill.sources, gendistill.teachers), joined here by their tag.

Precedence is defaults < YAML < `--set section.key=value`. Unknown keys and bad values are errors that name
the key (and suggest the nearest known one), never silently ignored.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
import reprlib
import types
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from gendistill import progress
from gendistill.errors import ConfigError
from gendistill.generation.generator_config import GeneratorConfig
from gendistill.io import register_secret
from gendistill.sections import Section as _Section
from gendistill.sections import added, knob
from gendistill.sources import SOURCES, source_union
from gendistill.sources.generate import migrate_generator_sampling
from gendistill.students.architectures import ARCHITECTURES, StudentSpec
from gendistill.students.architectures.bilstm import BiLSTMSpec
from gendistill.students.architectures.cnn import default_kernel_sizes
from gendistill.teachers import DEFAULT_KIND, TEACHERS, teacher_union

MAX_DISTILL_TEMPERATURE = 100.0
MAX_SPEED_MIN_SECONDS = 60.0


class DataConfig(_Section):
    """Where the labeled data comes from and how to read it."""

    train: str | None = Field(
        default=None,
        description="CSV/TSV/JSONL/Parquet path, or hf:NAME[:CONFIG] for a Hugging Face dataset; omit it for a "
        "zero-label start (then data.label_names names the classes, and an llm source and an llm teacher make and "
        "label the texts)",
    )
    test: str | None = Field(default=None, description="test set; for hf: datasets defaults to the 'test' split")
    validation: str | None = Field(default=None, description="optional validation set (model selection)")
    text_column: str = "text"
    label_column: str = "label"
    label_names: list[str] | str | None = Field(
        default=None,
        description="class names in label-id order, or a JSON file holding them; "
        "default: labels.json beside the train file, if there is one (integer labels are ids into it)",
    )
    per_class: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="stratified low-data sample: keep N labeled examples per class"
    )
    label_descriptions: dict[str, str] | None = Field(
        default=None, description="class name -> what the class means, shown to LLM sources and teachers"
    )
    seed: int = 0
    max_chars: Annotated[int, Field(ge=1)] = Field(default=2000, description="longer texts are truncated")
    skip_invalid_rows: bool = Field(default=False, description="skip empty/null/non-string texts with a warning")
    multi_label: bool | None = added(
        None,
        description="each text may carry several labels (or none: an empty list); default: detected (lists in the "
        "label column, label_delimiter or label_columns set)",
    )
    label_delimiter: Annotated[str, Field(min_length=1)] | None = added(
        None, description="multi-label: the labels of a row in one string split on this (e.g. '|' in CSV)"
    )
    label_columns: Annotated[list[str], Field(min_length=2)] | None = added(
        None, description="multi-label: one 0/1 column per label, named by the label (replaces label_column)"
    )

    @model_validator(mode="after")
    def _multi_label_forms_agree(self) -> DataConfig:
        if self.multi_label is False and (self.label_delimiter or self.label_columns):
            key = "label_delimiter" if self.label_delimiter else "label_columns"
            raise ValueError(f"data.{key} is a multi-label form but data.multi_label is false; remove one of them")
        if self.label_delimiter and self.label_columns:
            raise ValueError("data.label_delimiter and data.label_columns are two forms of the labels; give one")
        if self.label_columns and self.label_names is not None:
            raise ValueError("data.label_columns names the labels already; remove data.label_names")
        if self.train is None and (self.multi_label or self.label_delimiter or self.label_columns):
            raise ValueError("a multi-label task needs labeled data in data.train (no zero-label start yet)")
        return self

    @model_validator(mode="after")
    def _zero_label_start_names_the_classes(self) -> DataConfig:
        if self.train is None and self.label_names is None:
            raise ValueError(
                "data.train is not set (a zero-label start): list the class names in data.label_names "
                "(or give data.train)"
            )
        if self.train is None and self.per_class is not None:
            raise ValueError("data.per_class samples data.train, which is not set; remove per_class")
        return self

    @property
    def zero_label(self) -> bool:
        """No labeled texts: the classes are only named (the llm source writes texts, the llm teacher labels)."""
        return self.train is None


class FilterConfig(_Section):
    """Cleaning applied to every transfer text; each drop is counted in the report."""

    min_words: Annotated[int, Field(ge=0)] = 3
    max_words: Annotated[int, Field(ge=1)] = 200
    drop_duplicates: bool = True
    drop_training_copies: bool = True


class TransferConfig(_Section):
    """Where the unlabeled transfer texts come from (one entry per source, any registered `type`)."""

    sources: list[source_union()] = Field(default_factory=list)  # type: ignore[valid-type]
    filters: FilterConfig = Field(default_factory=FilterConfig)
    shard_size: Annotated[int, Field(ge=1)] = 256


class Selection(str, Enum):
    """How a round picks the texts the teacher labels next, from the student's view of the candidates."""

    margin = "margin"  # smallest gap between the student's two most likely classes
    entropy = "entropy"  # highest entropy of the student's class distribution
    disagreement = "disagreement"  # dropout committee of the student disagrees most (BALD mutual information)


class RoundsConfig(_Section):
    """Agreement rounds after the one-shot student: each round the student scores a pool of new candidates, the
    teacher labels only the `per_round` it is least sure of, and the student continues from its weights on
    everything labeled so far. Rounds stop when the student's agreement with the teacher on `holdout`
    teacher-labeled pool texts stops rising (never the test set)."""

    count: Annotated[int, Field(ge=0, le=100)] = Field(default=0, description="rounds at most (0: no rounds)")
    per_round: Annotated[int, Field(ge=1)] = Field(default=500, description="texts the teacher labels per round")
    candidates: Annotated[int, Field(ge=1)] = Field(
        default=5000,
        description="new pool texts drawn per round; the student scores them with earlier rounds' unpicked ones",
    )
    pool: source_union() | None = Field(  # type: ignore[valid-type]
        default=None,
        description="where candidates come from (any transfer source; default: transfer.sources[0]); each round "
        "after the first shows it the texts the last round picked, as the labeled examples of their teacher class",
    )
    select: Selection = Selection.margin
    balance: bool = Field(default=True, description="pick per class of the student's prediction, in turns")
    committee: Annotated[int, Field(ge=2, le=64)] = Field(
        default=8, description="select: disagreement: dropout passes of the student that vote"
    )
    sampling: Literal["top", "power"] = added(
        "top",
        description="top: the per_round least-sure candidates; power: a draw without replacement with probability "
        "proportional to uncertainty ** power (stochastic acquisition), which reaches below the very top",
    )
    power: Annotated[float, Field(gt=0)] = added(
        1.0, description="sampling: power: the exponent (higher: closer to top)"
    )
    holdout: Annotated[int, Field(ge=20)] = Field(
        default=500, description="pool texts the teacher labels once, to measure agreement (counted as spent)"
    )
    epochs: Annotated[int, Field(ge=1)] = Field(
        default=5, description="student epochs per round, over everything labeled so far"
    )
    patience: Annotated[int, Field(ge=1)] = Field(
        default=1, description="stop after this many rounds without a rise in held-out agreement"
    )
    min_gain: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.002, description="a rise in held-out agreement smaller than this does not count"
    )

    @model_validator(mode="before")
    @classmethod
    def _pool_n(cls, raw: Any) -> Any:
        """A pool source draws `candidates` texts a round: a source kind that requires `n` gets it from there."""
        if isinstance(raw, dict) and isinstance(raw.get("pool"), dict) and "n" not in raw["pool"]:
            candidates = raw.get("candidates", cls.model_fields["candidates"].default)
            return {**raw, "pool": {**raw["pool"], "n": candidates}}
        return raw

    def active(self) -> bool:
        return self.count > 0

    def pool_source(self, transfer: TransferConfig) -> Any:
        """The configured pool, or the first transfer source (None when there is neither)."""
        if self.pool is not None:
            return self.pool
        return transfer.sources[0] if transfer.sources else None


class EmbeddingInit(str, Enum):
    teacher = "teacher"
    random = "random"


class InitSource(str, Enum):
    """`student.init_from`'s named choices; any other value is an encoder folder or Hugging Face id."""

    finetuned = "finetuned"
    base = "base"


class LossKind(str, Enum):
    mse = "mse"
    kl = "kl"


class Pooling(str, Enum):
    """How the BiLSTM reads its states out: max over time, or mean and max side by side."""

    max = "max"
    mean_max = "mean_max"


class UnseenTokens(str, Enum):
    """Teacher-init: where a teacher token that no training text contains goes at inference."""

    unk = "unk"
    nearest = "nearest"


class StudentConfig(_Section):
    """The tiny student and how it is distilled."""

    arch: str = Field(
        default="bilstm",
        description=f"a registered student architecture: {', '.join(ARCHITECTURES.names())}, or a plugin's name",
    )
    init: EmbeddingInit = Field(
        default=EmbeddingInit.teacher,
        description="teacher: the teacher's tokenizer (pruned to the texts' tokens) and static embeddings "
        "distilled from it; random: a word-level vocabulary learnt from the texts, random embeddings",
    )
    init_from: str = Field(
        default=InitSource.base.value,
        min_length=1,
        description="teacher-init: embed tokens with the teacher's base model (base) or the fine-tuned one "
        "(finetuned), or with any encoder folder or Hugging Face id (its tokenizer too): what an llm teacher needs",
    )
    # a knob: it decides whether a file may be read, not what is trained (no student key changes with it)
    allow_pickle_weights: bool = knob(
        False,
        description="also load pytorch_model.bin (pickle) weights of the encoder student.init_from names; default: "
        "safetensors only",
    )
    # the network's defaults are its spec's (students/architectures): they keep a student under ~1.1M parameters on
    # a news-sized vocabulary (300x below BERT-Large)
    embedding_dim: Annotated[int, Field(ge=8, le=4096)] = StudentSpec.embedding_dim
    hidden_dim: Annotated[int, Field(ge=8, le=8192)] = StudentSpec.hidden_dim
    vocab_size: Annotated[int, Field(ge=100, le=2_000_000)] = 14000
    min_frequency: Annotated[int, Field(ge=1)] = 1
    max_length: Annotated[int, Field(ge=4, le=8192)] = 128
    dropout: Annotated[float, Field(ge=0, lt=1)] = StudentSpec.dropout
    cnn_kernel_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=default_kernel_sizes)
    # SIF off by default: chosen on dev agreement (student vs teacher on held-out teacher-labeled texts) on all five
    # harness datasets (benchmarks/dev_choice.py; RESULTS.md, "The student defaults chosen again on dev agreement")
    sif_coefficient: Annotated[float, Field(ge=0)] | None = Field(
        default=None,
        description="teacher-init: down-weight frequent tokens by a/(a+p(token)) (SIF, e.g. 1e-3); null (default) "
        "keeps every token's distilled embedding as it is",
    )
    pooling: Pooling = Field(
        default=Pooling(BiLSTMSpec.pooling),
        description="bilstm readout: max over time, or mean_max (mean and max concatenated)",
    )
    unseen_tokens: UnseenTokens = Field(
        default=UnseenTokens.nearest,
        description="teacher-init: a teacher token no training text contains maps to [UNK] (unk) or to the kept "
        "token nearest to it in the teacher's static embeddings (nearest; the student keeps what the teacher knows "
        "about words it never saw in training, at no extra parameters)",
    )
    loss: LossKind = LossKind.kl
    temperature: Annotated[float, Field(gt=0, le=MAX_DISTILL_TEMPERATURE)] = Field(
        default=2.0,
        description=f"softens both distributions in the KL loss (at most {MAX_DISTILL_TEMPERATURE:g}: far above it "
        "every soft target is uniform and the loss, scaled by temperature**2, overflows)",
    )
    # on by default: chosen on dev agreement on all five harness datasets (benchmarks/dev_choice.py, setting choose_t;
    # RESULTS.md, "The distillation temperature chosen per run"). A plain field, not `added`: a run dir distilled
    # at a fixed temperature before it was the default reruns its student, rather than keep one the config no
    # longer describes.
    choose_temperature: (
        Annotated[list[Annotated[float, Field(gt=0, le=MAX_DISTILL_TEMPERATURE)]], Field(min_length=2)] | None
    ) = Field(
        default_factory=lambda: [1.0, 2.0],
        description="distill at whichever of these temperatures agrees most with the teacher on held-out transfer "
        "texts (2-fold: students trained on one half of the transfer texts at each, scored on the other; about one "
        "extra training per candidate; fewer than 100 transfer texts keep `temperature`); null: `temperature`",
    )
    alpha: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5, description="weight of gold-label cross-entropy on labeled examples (1 - alpha: distillation)"
    )
    epochs: Annotated[int, Field(ge=1)] = 20
    learning_rate: Annotated[float, Field(gt=0)] = 2e-3
    batch_size: Annotated[int, Field(ge=1)] = 64
    baseline: bool = Field(default=True, description="also train the baseline student (labeled data only, CE)")
    labeled_only_budget: Literal["cv", "matched"] = Field(
        default="cv",
        description="a student trained on the labeled texts alone (the baseline, or a run without transfer texts) "
        "picks its epoch count by k-fold cross-validation on the labeled set, up to its step budget (cv), or trains "
        "the whole budget (matched: hundreds of passes over a few dozen texts, which can collapse to one class)",
    )
    cv_folds: Annotated[int, Field(ge=2, le=20)] = 4

    def init_encoder(self) -> str | None:
        """The encoder folder or id named by `init_from`, or None for `base`/`finetuned` (the teacher's)."""
        return None if self.init_from in {choice.value for choice in InitSource} else self.init_from

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value not in ARCHITECTURES:
            raise ValueError(
                f"unknown student architecture {value!r}; expected one of {', '.join(ARCHITECTURES.names())}"
            )
        return value


class LabelConfig(_Section):
    """Curation of the transfer set once the teacher has labeled it; all off by default. Every text stays labeled
    on disk; the student trains on the kept ones, and the report counts what each option dropped."""

    near_duplicates: Annotated[float, Field(ge=0.1, le=0.95)] | None = Field(
        default=None,
        description="drop a text whose word uni/bigram Jaccard similarity (MinHash) to an earlier one is at least "
        "this (e.g. 0.8); needs datasketch",
    )
    drop_uncertain: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.0, description="drop this fraction of the transfer texts on which the teacher's entropy is highest"
    )
    rebalance: Annotated[float, Field(ge=1)] | None = Field(
        default=None,
        description="subsample every class (by the teacher's label) to at most this many times the rarest class "
        "(1 = balanced)",
    )

    def active(self) -> bool:
        return self.near_duplicates is not None or self.drop_uncertain > 0 or self.rebalance is not None


class EvaluateConfig(_Section):
    """How the report measures: every field but `target_accuracy`, `temperature` and `accuracy_guarantee` is a knob
    (it changes no model), so `--force evaluate` re-measures. Those three decide the calibration stored with the
    students, so they are in the evaluate stage's key (only when changed from their defaults: older run dirs keep
    their keys)."""

    batch_size: Annotated[int, Field(ge=1)] = knob(64, description="texts per batch when predicting and timing")
    speed_examples: Annotated[int, Field(ge=1)] = knob(512, description="texts timed for throughput")
    speed_passes: Annotated[int, Field(ge=1)] = knob(5, description="timed passes per model (median and spread)")
    speed_min_seconds: Annotated[float, Field(ge=0, le=MAX_SPEED_MIN_SECONDS)] = knob(
        0.25,
        description=f"a timed pass repeats the texts until it has run this long (at most {MAX_SPEED_MIN_SECONDS:g} s: "
        "each model is timed speed_passes times, so a larger value only makes the report take hours)",
    )
    threads: Annotated[int, Field(ge=1)] | None = knob(None, description="CPU threads for speed (default: all)")
    target_accuracy: Annotated[float, Field(gt=0, lt=1)] = added(
        0.95,
        description="selective prediction: the confidence threshold is the lowest whose answered held-out texts "
        "reach this accuracy (stored in calibration.json; `gendistill serve --min-confidence stored`)",
    )
    temperature: Literal["cross-validated", "fitted"] = added(
        "cross-validated",
        description="calibration: `fitted` uses the temperature that minimizes the held-out split's NLL; "
        "`cross-validated` keeps T = 1 unless that fit also lowers the NLL of held-out folds (5-fold), so a model "
        "that is calibrated already is not moved by the noise of a small split",
    )
    accuracy_guarantee: Annotated[float, Field(gt=0, lt=1)] | None = added(
        None,
        description="selective prediction with a guarantee: the threshold keeps target_accuracy with this "
        "probability over the draw of the held-out split (SGR with Clopper-Pearson bounds; fewer texts answered, "
        "none on a small split); unset: the held-out point estimate, which new data misses about half the time",
    )


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class RunConfig(_Section):
    """Everything one `gendistill run` needs."""

    data: DataConfig
    teacher: teacher_union()  # type: ignore[valid-type]
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    label: LabelConfig = Field(default_factory=LabelConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    rounds: RoundsConfig = Field(default_factory=RoundsConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    seed: int = 0
    device: Device = Device.auto
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    report_to: list[str] = knob(
        [],
        description="experiment trackers for every training loop, through Accelerate: tensorboard, mlflow, wandb, "
        "... or all (TensorBoard logs go to RUN_DIR/logs; MLflow to MLFLOW_TRACKING_URI)",
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _trackers(cls, value: Any) -> Any:
        """One name or a list; 'none' (or null) turns tracking off. Names are checked in the run's preflight."""
        if value is None:
            return []
        values = [value] if isinstance(value, str) else value
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            return [v.strip().lower() for v in values if v.strip().lower() != "none"]
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_teacher_kind(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("teacher"), dict) and "kind" not in raw["teacher"]:
            return {**raw, "teacher": {"kind": DEFAULT_KIND, **raw["teacher"]}}
        return raw

    def section_hash(self, *names: str) -> str:
        """A short hash of whole sections (knobs included): names a run, never decides a rerun."""
        payload = {name: _dump(getattr(self, name)) for name in names}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def uses_generator(self) -> bool:
        return any(source.needs_generator for source in self.transfer.sources)


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


# ---- YAML reading ----------------------------------------------------------------------------------------------
MAX_ALIAS_EXPANSION = 10_000  # values aliases may add; a "billion laughs" file expands to billions from a few lines


class ConfigYAMLRefused(yaml.YAMLError):
    """YAML that parses but that a config must not contain (a duplicate key, an alias bomb); the message says why."""


class ConfigLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a duplicate key at any level (PyYAML keeps the last one and silently drops
    the first block) and aliases that expand beyond MAX_ALIAS_EXPANSION values (PyYAML shares aliased nodes, so
    reading is quick, but validating and formatting the expanded value takes minutes and gigabytes)."""

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_alias_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line = key_node.start_mark.line + 1
            earlier = first_line.setdefault((key_node.tag, key_node.value), line)
            if earlier != line:
                raise ConfigYAMLRefused(
                    f"duplicate key {_short(key_node.value)} at lines {earlier} and {line}; the second would "
                    "silently replace the first: merge them into one"
                )
        return super().construct_mapping(node, deep=deep)


def _check_alias_expansion(root: yaml.Node) -> None:
    """Count the values the document holds once every alias is expanded (each distinct node is counted once, so
    this takes time linear in the file); refuse a self-referencing alias or an expansion beyond the bound."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in visiting:
            raise ConfigYAMLRefused(
                f"an alias at line {node.start_mark.line + 1} refers to the value that contains it; configs cannot "
                "be self-referencing"
            )
        visiting.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        visiting.discard(key)
        sizes[key] = total
        if total - len(sizes) > MAX_ALIAS_EXPANSION:
            raise ConfigYAMLRefused(
                f"aliases (*name) expand to more than {MAX_ALIAS_EXPANSION:,} values (at line "
                f"{node.start_mark.line + 1}); write the values out or use fewer nested aliases"
            )
        return total

    size(root)


_BOUNDED_REPR = reprlib.Repr()
_BOUNDED_REPR.maxlevel, _BOUNDED_REPR.maxlist, _BOUNDED_REPR.maxdict = 3, 6, 6
_BOUNDED_REPR.maxstring = _BOUNDED_REPR.maxother = _BOUNDED_REPR.maxlong = 80


def _short(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters (and never built whole: a nested value is cut while it is walked),
    so a message never formats an unbounded value."""
    text = _BOUNDED_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_yaml(text: str) -> Any:
    """Parse config YAML with ConfigLoader (no duplicate keys, no alias bombs)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - ConfigLoader is a SafeLoader


# ---- overrides -------------------------------------------------------------------------------------------------
_INDEX = re.compile(r"\[(\d+)\]")
# config keys whose --set value may be a secret a user pasted: never echoed in a message
SECRET_KEYS = frozenset({"api_key_env", "api_key", "token", "secret", "password"})


@dataclass
class Override:
    """One `--set path=value`; `path` parts are keys or list indices (`transfer.sources.0.n`, `sources[0].n`)."""

    text: str
    path: list[str | int]
    value: Any


def parse_overrides(overrides: list[str]) -> list[Override]:
    """Parse `a.b=value` strings; values are YAML (so `3`, `true`, `[1,2]`, `{type: file, path: x}` work)."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = _INDEX.sub(r".\1", key.strip()).split(".")
        if not sep or not key.strip() or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set student.epochs=5")
        try:
            value = read_yaml(raw) if raw.strip() else ""
        except ConfigYAMLRefused as error:
            raise ConfigError(f"--set {_short(item)}: {error}") from None
        except yaml.YAMLError:
            value = raw
        if parts[-1] in SECRET_KEYS:  # e.g. api_key_env=sk-...: a pasted key is never echoed back
            register_secret(raw.strip())
            item = f"{key.strip()}=<hidden>"
        parsed.append(Override(item, [int(p) if p.isdigit() else p for p in parts], value))
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: list[Override]) -> dict[str, Any]:
    """A copy of `raw` with every override set, creating sections on the way; an index may address an existing
    list entry or append one (`transfer.sources.1.type=file` adds a second source)."""
    merged = copy.deepcopy(raw)
    for override in overrides:
        node: Any = merged
        for depth, part in enumerate(override.path):
            where = ".".join(map(str, override.path[: depth + 1]))
            last = depth == len(override.path) - 1
            if isinstance(part, int):
                if not isinstance(node, list):
                    raise ConfigError(f"--set {override.text}: {where.rsplit('.', 1)[0]} is not a list")
                if part > len(node):
                    raise ConfigError(
                        f"--set {override.text}: {where.rsplit('.', 1)[0]} has {len(node)} entries; "
                        f"use an index from 0 to {len(node)} ({len(node)} appends one)"
                    )
                if part == len(node):
                    node.append({})
                if last:
                    node[part] = override.value
                else:
                    node = node[part]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set {override.text}: {where.rsplit('.', 1)[0]} is not a section")
            if last:
                node[part] = override.value
            else:
                if node.get(part) is None:
                    node[part] = [] if isinstance(override.path[depth + 1], int) else {}
                node = node[part]
    return merged


# ---- validation errors, told as one line naming the key and where it came from ---------------------------------
def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any]:
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [_unwrap(arg) for arg in get_args(annotation) if arg is not type(None)]
    return [annotation]


def _walk(loc: tuple[Any, ...]) -> tuple[list[str | int], list[str]]:
    """pydantic's error location without union tags, and the keys valid beside its last part."""
    clean: list[str | int] = []
    current: list[Any] = [RunConfig]
    known: list[str] = list(RunConfig.model_fields)
    for part in loc:
        models = [m for m in current if isinstance(m, type) and issubclass(m, BaseModel)]
        lists = [m for m in current if get_origin(m) is list]
        if isinstance(part, int) and lists:
            current = _members(get_args(lists[0])[0])
            clean.append(part)
            continue
        tagged = [m for m in models if len(models) > 1 and _tag(m) == part]
        if tagged:  # a discriminated union's tag: not a key the user wrote
            current = tagged
            continue
        owner = next((m for m in models if part in m.model_fields), None)
        clean.append(part)
        if owner is None:
            known = sorted({name for m in models for name in m.model_fields}) if models else []
            current = []
            continue
        known = list(owner.model_fields)
        current = _members(owner.model_fields[part].annotation)
    return clean, known


def _tag(model: type[BaseModel]) -> Any:
    for name in ("type", "kind"):
        field = model.model_fields.get(name)
        if field is not None and isinstance(field.default, str):
            return field.default
    return None


def _origin(path: list[str | int], overrides: list[Override], source: str) -> str:
    """`--set ...` when an override wrote at or below/above `path`, else the config file."""
    for override in reversed(overrides):
        depth = min(len(path), len(override.path))
        if depth and override.path[:depth] == path[:depth]:
            return f"--set {override.text}"
    return source


def _format_validation_error(error: ValidationError, source: str, overrides: list[Override] | None = None) -> str:
    first = error.errors()[0]
    path, known = _walk(tuple(first["loc"]))
    where = ".".join(str(p) for p in path) or "(top level)"
    origin = _origin(path, overrides or [], source)
    if first["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(str(path[-1]), known, n=1)
        suggestion = f"; did you mean {'.'.join([*map(str, path[:-1]), hint[0]])!r}?" if hint else ""
        return f"{origin}: unknown config key {where!r}{suggestion} (known here: {', '.join(known)})"
    if first["type"] == "missing":
        return f"{origin}: missing required config key {where!r}"
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        kinds = {"sources": ("type", SOURCES.names()), "teacher": ("kind", TEACHERS.names())}
        field, names = next((v for k, v in kinds.items() if k in path), ("type", []))
        found = first.get("input", {}).get(field) if isinstance(first.get("input"), dict) else None
        return f"{origin}: {where}.{field}: expected one of {', '.join(names)} (got {_short(found)})"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "value_not_shown":  # e.g. an API key pasted where its variable's name belongs
        return f"{origin}: bad value for {where!r}: {message}"
    if first["type"] == "finite_number":
        message = "must be a finite number (not NaN or infinity)"
    return f"{origin}: bad value for {where!r}: {message} (got {_short(first.get('input'))})"


def build_config(raw: dict[str, Any], overrides: list[str] | None = None, source: str = "config") -> RunConfig:
    """Validate a config dict after applying `--set` overrides; old-format keys are migrated with a note."""

    parsed = parse_overrides(overrides or [])
    merged = apply_overrides(raw, parsed)
    for note in migrate_generator_sampling(merged):
        progress.log(f"[yellow]note[/yellow]: {source}: {note}")
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source, parsed)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply `--set` overrides, validate."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    try:
        raw = read_yaml(text) or {}
    except ConfigYAMLRefused as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data:, teacher:, ...), got {type(raw).__name__}")
    return build_config(raw, overrides, source=str(path))
