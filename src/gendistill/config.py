"""Typed configuration: one section per stage, loaded from YAML with `--set` overrides.

Precedence is defaults < YAML < `--set section.key=value`. Unknown keys and bad values are errors that name
the key (and suggest the nearest known one), never silently ignored.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gendistill.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=True)


class DataConfig(_Section):
    """Where the labeled data comes from and how to read it."""

    train: str = Field(description="CSV/TSV/JSONL/Parquet path, or hf:NAME[:CONFIG] for a Hugging Face dataset")
    test: str | None = Field(default=None, description="test set; for hf: datasets defaults to the 'test' split")
    validation: str | None = Field(default=None, description="optional validation set (model selection)")
    text_column: str = "text"
    label_column: str = "label"
    label_names: list[str] | str | None = Field(
        default=None,
        description="class names in label-id order, or a JSON file holding them; "
        "default: labels.json beside the train file when labels are integers",
    )
    per_class: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="stratified low-data sample: keep N labeled examples per class"
    )
    seed: int = 0
    max_chars: Annotated[int, Field(ge=1)] = Field(default=2000, description="longer texts are truncated")
    skip_invalid_rows: bool = Field(default=False, description="skip empty/null/non-string texts with a warning")


class TeacherConfig(_Section):
    """The large classifier fine-tuned on the labeled data, then used to label the transfer set."""

    model: str = Field(description="Hugging Face model id or local path (AutoModelForSequenceClassification)")
    epochs: Annotated[float, Field(gt=0)] = 10
    learning_rate: Annotated[float, Field(gt=0)] = 5e-5
    batch_size: Annotated[int, Field(ge=1)] = 16
    max_length: Annotated[int, Field(ge=8)] = 128
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    warmup_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    label_batch_size: Annotated[int, Field(ge=1)] = 64
    trust_remote_code: bool = False


class PromptKind(str, Enum):
    bos = "bos"
    first_word = "first_word"


class GeneratorConfig(_Section):
    """The causal LM fine-tuned on the training texts and sampled to make the transfer set."""

    model: str = Field(
        default="scratch",
        description="Hugging Face causal LM id or path (e.g. gpt2), or 'scratch': a small GPT-2 trained from "
        "random init with a byte-level BPE tokenizer learnt from the texts (the air-gapped setting)",
    )
    conditional: bool = Field(default=False, description="prefix each text with its label name")
    epochs: Annotated[float, Field(gt=0)] | None = Field(default=None, description="default: 3, or 30 for scratch")
    learning_rate: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="default: 5e-5, or 1e-3 for scratch"
    )
    batch_size: Annotated[int, Field(ge=1)] = 8
    max_length: Annotated[int, Field(ge=8)] = 128
    # sampling
    prompt: PromptKind = PromptKind.bos
    top_k: Annotated[int, Field(ge=0)] = 0
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.95
    temperature: Annotated[float, Field(gt=0)] = 1.0
    max_new_tokens: Annotated[int, Field(ge=1)] = 64
    sample_batch_size: Annotated[int, Field(ge=1)] = 32
    # a 'scratch' model's size
    scratch_layers: Annotated[int, Field(ge=1)] = 4
    scratch_dim: Annotated[int, Field(ge=16)] = 256
    scratch_heads: Annotated[int, Field(ge=1)] = 4
    scratch_vocab_size: Annotated[int, Field(ge=300)] = 4000
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> GeneratorConfig:
        if self.scratch_dim % self.scratch_heads:
            raise ValueError(f"scratch_dim ({self.scratch_dim}) must be divisible by scratch_heads")
        return self


class SourceKind(str, Enum):
    generate = "generate"
    file = "file"
    augment = "augment"


class TransferSource(_Section):
    """One source of unlabeled transfer texts."""

    type: SourceKind
    n: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="texts to take (generate: required; file: default all)"
    )
    path: str | None = Field(default=None, description="file source: CSV/TSV/JSONL/Parquet or hf:NAME")
    text_column: str = "text"
    exclude_labeled: bool = Field(
        default=True, description="file source: drop texts that are in the labeled training set"
    )
    # augment source: Tang et al. (2019) rules applied to the labeled texts (defaults are the paper's)
    copies: Annotated[int, Field(ge=1)] = Field(default=20, description="augment: variants per labeled text")
    p_mask: Annotated[float, Field(ge=0, le=1)] = 0.1
    p_swap: Annotated[float, Field(ge=0, le=1)] = 0.1
    p_ngram: Annotated[float, Field(ge=0, le=1)] = 0.25
    ngram_max: Annotated[int, Field(ge=1)] = 5
    mask_token: str = "[MASK]"
    swap: Literal["auto", "pos", "shape", "none"] = Field(
        default="auto", description="augment word swaps: same part of speech (pos), same word shape, or none"
    )

    @model_validator(mode="after")
    def _check(self) -> TransferSource:
        if self.type == SourceKind.generate.value and self.n is None:
            raise ValueError("a 'generate' source needs n: the number of texts to generate")
        if self.type == SourceKind.file.value and not self.path:
            raise ValueError("a 'file' source needs path")
        if self.p_mask + self.p_swap > 1:
            raise ValueError(f"p_mask + p_swap must be at most 1 (got {self.p_mask} + {self.p_swap})")
        return self


class FilterConfig(_Section):
    """Cleaning applied to every transfer text; each drop is counted in the report."""

    min_words: Annotated[int, Field(ge=0)] = 3
    max_words: Annotated[int, Field(ge=1)] = 200
    drop_duplicates: bool = True
    drop_training_copies: bool = True


class TransferConfig(_Section):
    sources: list[TransferSource] = Field(default_factory=list)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    shard_size: Annotated[int, Field(ge=1)] = 256


class Architecture(str, Enum):
    bilstm = "bilstm"
    cnn = "cnn"
    bag = "bag"


class EmbeddingInit(str, Enum):
    teacher = "teacher"
    random = "random"


class InitSource(str, Enum):
    finetuned = "finetuned"
    base = "base"


class LossKind(str, Enum):
    mse = "mse"
    kl = "kl"


class StudentConfig(_Section):
    """The tiny student and how it is distilled."""

    arch: Architecture = Architecture.bilstm
    init: EmbeddingInit = Field(
        default=EmbeddingInit.teacher,
        description="teacher: the teacher's tokenizer (pruned to the texts' tokens) and static embeddings "
        "distilled from it; random: a word-level vocabulary learnt from the texts, random embeddings",
    )
    init_from: InitSource = Field(
        default=InitSource.base, description="teacher-init: embed tokens with the base model or the fine-tuned one"
    )
    # defaults keep a student under ~1.1M parameters on a news-sized vocabulary (300x below BERT-Large)
    embedding_dim: Annotated[int, Field(ge=8)] = 64
    hidden_dim: Annotated[int, Field(ge=8)] = 96
    vocab_size: Annotated[int, Field(ge=100)] = 14000
    min_frequency: Annotated[int, Field(ge=1)] = 1
    max_length: Annotated[int, Field(ge=4)] = 128
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    cnn_kernel_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [3, 4, 5])
    sif_coefficient: Annotated[float, Field(ge=0)] | None = Field(
        default=1e-3, description="teacher-init: down-weight frequent tokens by a/(a+p(token)); null disables"
    )
    loss: LossKind = LossKind.mse
    temperature: Annotated[float, Field(gt=0)] = 2.0
    alpha: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5, description="weight of gold-label cross-entropy on labeled examples (1 - alpha: distillation)"
    )
    epochs: Annotated[int, Field(ge=1)] = 10
    learning_rate: Annotated[float, Field(gt=0)] = 2e-3
    batch_size: Annotated[int, Field(ge=1)] = 64
    baseline: bool = Field(default=True, description="also train the baseline student (labeled data only, CE)")


class EvaluateConfig(_Section):
    batch_size: Annotated[int, Field(ge=1)] = 64
    speed_examples: Annotated[int, Field(ge=1)] = 512
    threads: Annotated[int, Field(ge=1)] | None = Field(default=None, description="CPU threads for speed")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class RunConfig(_Section):
    """Everything one `gendistill run` needs."""

    data: DataConfig
    teacher: TeacherConfig
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    seed: int = 0
    device: Device = Device.auto
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"

    def section_hash(self, *names: str) -> str:
        payload = {name: _dump(getattr(self, name)) for name in names}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def uses_generator(self) -> bool:
        return any(source.type == SourceKind.generate.value for source in self.transfer.sources)


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn `a.b=value` strings into a nested dict; values are parsed as YAML (so `3`, `true`, `[1,2]` work)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set student.epochs=5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names valid at `loc` (the parent of an unknown key), for a 'did you mean' hint."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _format_validation_error(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        known = _known_keys(RunConfig, loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
        suggestion = f"; did you mean {'.'.join([*map(str, loc[:-1]), hint[0]])!r}?" if hint else ""
        return f"{source}: unknown config key {where!r}{suggestion} (known here: {', '.join(known)})"
    if first["type"] == "missing":
        return f"{source}: missing required config key {where!r}"
    message = first["msg"].removeprefix("Value error, ")
    return f"{source}: bad value for {where!r}: {message} (got {first.get('input')!r})"


def build_config(raw: dict[str, Any], overrides: list[str] | None = None, source: str = "config") -> RunConfig:
    merged = _merge(raw, parse_overrides(overrides or []))
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


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
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data:, teacher:, ...), got {type(raw).__name__}")
    return build_config(raw, overrides, source=str(path))
