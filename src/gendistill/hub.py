"""Load Hugging Face models/tokenizers by id or path with a clear error when they cannot be reached."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gendistill.errors import ModelLoadError


def from_pretrained(loader: Callable[..., Any], name: str, what: str, **kwargs: Any) -> Any:
    """`loader(name, **kwargs)`, turning 'not found / offline' failures into a one-line ModelLoadError."""
    try:
        return loader(name, **kwargs)
    except Exception as error:  # noqa: BLE001 - safetensors, tokenizers and transformers raise their own types
        if not isinstance(error, (OSError, ValueError)) and not _is_weights_error(error):
            raise
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
        if Path(name).exists():
            detail = str(error).splitlines()[0][:300]
            raise ModelLoadError(f"{what} {name!r}: the folder exists but cannot be loaded ({detail})") from None
        if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
            raise ModelLoadError(
                f"{what} {name!r}: no such folder; check the path (relative to where you run)"
            ) from None
        hint = (
            "it is not a local folder, and the Hugging Face Hub is not reachable offline (HF_HUB_OFFLINE=1)"
            if offline
            else "it is neither a local folder nor a model id that could be downloaded"
        )
        raise ModelLoadError(
            f"{what} {name!r} cannot be loaded: {hint}; download it where you are online "
            "(e.g. `huggingface-cli download NAME --local-dir DIR`) and pass the local folder path"
        ) from None


def _is_weights_error(error: Exception) -> bool:
    """A corrupt or truncated weights file (safetensors' own exception type is not an OSError)."""
    return type(error).__name__ == "SafetensorError"


def check_model(name: str, what: str, trust_remote_code: bool) -> None:
    """Preflight for a Hugging Face model: a local folder must hold a config.json; a Hub id must be resolvable
    (fails fast when offline)."""
    from transformers import AutoConfig

    path = Path(name)
    if path.exists() and not (path / "config.json").exists():
        raise ModelLoadError(
            f"{what} {name!r}: the folder has no config.json; pass a folder written by "
            "save_pretrained (or `huggingface-cli download`)"
        )
    from_pretrained(AutoConfig.from_pretrained, name, what, trust_remote_code=trust_remote_code)


# ---- gendistill's own models (students, ONNX exports) as Hub repos -----------------------------------------------
def looks_like_path(name: str) -> bool:
    """A name that can only be a local path (never a Hub repo id `user/name` or `name`)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or Path(name).is_absolute()


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
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from gendistill import __version__

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
            library_version=__version__,
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


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    commit_message: str,
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool = False,
) -> str:
    """Create the model repo if needed and upload `folder` as one commit (the files it holds, nothing else);
    returns the commit's URL. Errors (offline, not logged in, no write access) are one-line HubErrors."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HFValidationError, OfflineModeIsEnabled

    from gendistill import __version__
    from gendistill.errors import HubError

    api = HfApi(token=token, library_name="gendistill", library_version=__version__)
    try:
        repo_id = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True).repo_id
        if branch is not None:
            api.create_branch(repo_id=repo_id, branch=branch, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            commit_message=commit_message,
            revision=branch,
            create_pr=create_pr,
        )
    except HFValidationError as error:
        raise HubError(f"{repo_id!r} is not a valid Hub repo id ({error}); use user/name") from None
    except OfflineModeIsEnabled:
        raise HubError(
            f"cannot push to {repo_id!r}: the Hub is offline (HF_HUB_OFFLINE=1); unset it to upload"
        ) from None
    except OSError as error:  # HfHubHTTPError (401, 403, ...) and connection failures
        hint = (
            "; log in with `hf auth login` or set HF_TOKEN"
            if getattr(getattr(error, "response", None), "status_code", None) in (401, 403)
            else ""
        )
        raise HubError(
            f"cannot push to {repo_id!r} ({type(error).__name__}: {str(error).splitlines()[0][:200]}){hint}"
        ) from None
    return str(getattr(commit, "commit_url", commit))


def prepare_repo(source: str | Path, folder: str | Path, repo_id: str | None = None) -> str:
    """Write into `folder` the Hub repo for `source`: a run directory (its student), a student folder, or an ONNX
    export folder, with a model card built from the run's report.json when the run is there. Returns what it
    is ("student" or "onnx")."""
    import shutil

    from gendistill.inference import LABELS_FILE, METADATA_FILE, MODEL_FILE, TOKENIZER_FILE

    source, folder = Path(source), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (source / MODEL_FILE).is_file():
        from gendistill.card import card_text, export_facts, read_run, write_card
        from gendistill.io import read_json, write_json

        for name in (MODEL_FILE, TOKENIZER_FILE, LABELS_FILE, METADATA_FILE):
            if not (source / name).is_file():
                raise ModelLoadError(f"{source}: not a complete ONNX export ({name} missing); export it again")
            shutil.copyfile(source / name, folder / name)
        metadata = read_json(source / METADATA_FILE)
        run_dir = metadata.get("run_dir")
        # the published copy names the source folders, not where they lie on this machine
        public = {**metadata, **{key: Path(metadata[key]).name for key in ("source", "run_dir") if metadata.get(key)}}
        write_json(folder / METADATA_FILE, public)
        report, config = read_run(Path(run_dir) if run_dir and Path(run_dir).is_dir() else None)
        write_card(folder, card_text(export_facts(metadata), report, config, repo_id))
        return "onnx"
    from gendistill.export import resolve_source
    from gendistill.students import StudentClassifier

    student_dir, _, _ = resolve_source(source)
    StudentClassifier.from_pretrained(student_dir).save_pretrained(folder, repo_id=repo_id)
    return "student"


def push(
    source: str | Path,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool = False,
) -> str:
    """Upload a run's student, a student folder or an ONNX export folder, with its model card, to the Hub repo
    `repo_id` (created if needed); returns the commit URL."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gendistill-push-") as tmp:
        kind = prepare_repo(source, tmp, repo_id)
        return push_folder(
            tmp,
            repo_id,
            commit_message=commit_message or f"Upload gendistill {'ONNX export' if kind == 'onnx' else 'student'}",
            private=private,
            token=token,
            branch=branch,
            create_pr=create_pr,
        )
