"""Upload a prepared folder to a Hugging Face Hub model repo, with one-line errors (offline, not logged in, no
write access). What goes into the folder is artifacts.push's job."""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HFValidationError, OfflineModeIsEnabled

from gendistill import __version__
from gendistill.errors import HubError


@cache
def transport_errors() -> tuple[type[BaseException], ...]:
    """The exception classes of a request that never got an answer (refused, unreachable, timed out, TLS).

    They are not OSErrors: huggingface_hub raises its HTTP client's own (httpx2 in 1.x, httpx before it; requests'
    ConnectionError is an OSError and is caught as one), so each client that may be installed is asked for its base
    class."""
    classes: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):
        try:
            classes.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(classes)


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
    except transport_errors() as error:
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise HubError(
            f"cannot push to {repo_id!r}: the Hub at {constants.ENDPOINT} cannot be reached ({detail}); check the "
            "network (or HF_ENDPOINT), or write the repo locally with --local-dir"
        ) from None
    except OSError as error:  # HfHubHTTPError (401, 403, ...) and other I/O failures
        hint = (
            "; log in with `hf auth login` or set HF_TOKEN"
            if getattr(getattr(error, "response", None), "status_code", None) in (401, 403)
            else ""
        )
        raise HubError(
            f"cannot push to {repo_id!r} ({type(error).__name__}: {str(error).splitlines()[0][:200]}){hint}"
        ) from None
    return str(getattr(commit, "commit_url", commit))
