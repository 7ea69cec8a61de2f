"""What a path or Hub id holds: a run directory, a student folder or an ONNX export, as a local folder (fetched from
the Hub if need be).

Every place that takes "a model" (predict, export, push, the model card, `StudentClassifier.from_pretrained`, the
estimator) asks here, so each kind of folder is recognised by the same files: those of a student folder and of an
export are declared below, a run directory's are `RunLayout`'s. Torch-free, since the ONNX predictor imports it;
huggingface_hub is imported only when a Hub repo is fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gendistill
from gendistill.errors import ModelLoadError
from gendistill.loading import looks_like_path
from gendistill.pipeline.layout import RunLayout

TOKENIZER_FILE = "tokenizer.json"  # a student folder and an export both hold their tokenizer under this name
# a student folder, as StudentClassifier.save_pretrained writes it
CONFIG_FILE, WEIGHTS_FILE, ID_MAP_FILE = "config.json", "model.safetensors", "id_map.safetensors"
# an ONNX export folder, as `gendistill export` writes it; its metadata.json names the format and version
MODEL_FILE, LABELS_FILE, METADATA_FILE = "model.onnx", "labels.json", "metadata.json"
EXPORT_FILES = (MODEL_FILE, TOKENIZER_FILE, LABELS_FILE, METADATA_FILE)
FORMAT, FORMAT_VERSION = "gendistill-onnx", 1

Kind = Literal["run", "student", "export"]
KINDS: tuple[Kind, ...] = ("run", "student", "export")
KIND_NAMES = {"run": "a run directory", "student": "a student folder", "export": "an export folder"}


@dataclass(frozen=True)
class Artifact:
    """What a folder holds. `folder` is the model to load: the folder itself, or a run's student/. `run_dir` is the
    run around it on this machine, if any: its report.json and config.yaml feed the model card."""

    kind: Kind
    folder: Path
    run_dir: Path | None

    @property
    def report_key(self) -> str:
        """The student's row in its run's report.json: the folder's name (student, baseline_student) inside a run."""
        return self.folder.name if self.run_dir is not None else "student"


def identify(folder: Path) -> Artifact | None:
    """What the local `folder` holds, or None when it is none of the three (or does not exist)."""
    run = RunLayout(folder)
    if (run.final_student / CONFIG_FILE).is_file():
        return Artifact("run", run.final_student, folder)
    if (folder / MODEL_FILE).is_file():
        return Artifact("export", folder, None)
    if (folder / CONFIG_FILE).is_file():
        around = RunLayout(folder.parent)
        return Artifact("student", folder, around.root if around.report_json.is_file() else None)
    return None


def artifact_at(folder: Path, expected: tuple[Kind, ...] = KINDS, *, name: str | Path | None = None) -> Artifact:
    """What the local `folder` holds, if it is one of the `expected` kinds; else a one-line ModelLoadError naming
    `name` (what the user typed; default: the folder) and what was expected."""
    artifact = identify(folder)
    if artifact is None or artifact.kind not in expected:
        kinds = [KIND_NAMES[kind] for kind in KINDS if kind in expected]
        either = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"
        raise ModelLoadError(f"{name if name is not None else folder}: no student found (expected {either})")
    return artifact


def resolve_artifact(name: str | Path, what: str, *, expected: tuple[Kind, ...] = KINDS) -> Artifact:
    """`artifact_at` for a local folder or a Hub repo id (fetched by `resolve_model_dir`; `what` names the model
    in its errors)."""
    return artifact_at(resolve_model_dir(name, what), expected, name=name)


def resolve_model_dir(
    name: str | Path,
    what: str,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """A local folder for `name`: the folder itself when it exists, else the snapshot of the Hub repo `name`,
    downloaded into (or, offline, read from) the Hugging Face cache. HF_HUB_OFFLINE=1 or `local_files_only` use
    the cache alone; a repo that is not cached then is a ModelLoadError that says so."""
    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"{what} {text!r}: is a file; pass the folder that holds it")
    if looks_like_path(text):
        raise ModelLoadError(f"{what} {text!r}: no such folder; check the path (relative to where you run)")
    try:  # optional for the torch-free predictor, which needs it for Hub ids only
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import (
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ModuleNotFoundError:
        raise ModelLoadError(
            f"{text}: not a folder; loading a Hub repo needs huggingface_hub (pip install huggingface_hub)"
        ) from None

    offline = constants.HF_HUB_OFFLINE or local_files_only
    try:
        folder = snapshot_download(
            text,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            force_download=force_download,
            library_name="gendistill",
            library_version=gendistill.__version__,
        )
    except HFValidationError:
        raise ModelLoadError(
            f"{what} {text!r}: no such folder, and not a valid Hub repo id (expected user/name)"
        ) from None
    except LocalEntryNotFoundError:
        cache = cache_dir or constants.HF_HUB_CACHE
        reason = (
            "the Hub is offline (HF_HUB_OFFLINE=1)"
            if constants.HF_HUB_OFFLINE
            else "local_files_only=True"
            if local_files_only
            else "the Hub could not be reached"
        )
        raise ModelLoadError(
            f"{what} {text!r}: no such folder here, and the Hub repo {text!r}"
            f"{f' (revision {revision})' if revision else ''} is not in the Hugging Face cache ({cache}) while "
            f"{reason}; download it where you are online (`hf download {text}`) or pass a local folder"
        ) from None
    except RevisionNotFoundError:
        raise ModelLoadError(f"{what} {text!r}: the Hub repo has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise ModelLoadError(
            f"{what} {text!r}: no such folder here, and no such Hub repo (or it is private or gated: log in with "
            "`hf auth login` or pass token=...)"
        ) from None
    except OSError as error:  # connection failures, HTTP errors (HfHubHTTPError is an OSError)
        where = "the cache" if offline else "the Hub"
        raise ModelLoadError(
            f"{what} {text!r}: cannot be fetched from {where} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]})"
        ) from None
    return Path(folder)
