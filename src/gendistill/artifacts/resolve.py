"""What a path or Hub id holds: a local folder for a student, export or run, fetched from the Hub if need be."""

from __future__ import annotations

from pathlib import Path

from gendistill.errors import ModelLoadError
from gendistill.loading import looks_like_path


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
