"""Share a run's student, a student folder or an ONNX export on the Hub: copy what it holds into a folder with a
model card (no local paths), then upload it (artifacts.hub)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from gendistill.artifacts.card import card_text, export_facts, read_run, write_card
from gendistill.artifacts.hub import push_folder
from gendistill.artifacts.resolve import EXPORT_FILES, METADATA_FILE, artifact_at
from gendistill.errors import ModelLoadError
from gendistill.io import read_json, write_json
from gendistill.students.classifier import StudentClassifier


def prepare_repo(source: str | Path, folder: str | Path, repo_id: str | None = None) -> str:
    """Write into `folder` the Hub repo for `source`: a run directory (its student), a student folder, or an ONNX
    export folder, with a model card built from the run's report.json when the run is there. Returns what it
    is ("student" or "onnx")."""
    artifact = artifact_at(Path(source))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if artifact.kind != "export":
        StudentClassifier.from_pretrained(artifact.folder).save_pretrained(folder, repo_id=repo_id)
        return "student"
    export_dir = artifact.folder
    for name in EXPORT_FILES:
        if not (export_dir / name).is_file():
            raise ModelLoadError(f"{export_dir}: not a complete ONNX export ({name} missing); export it again")
        shutil.copyfile(export_dir / name, folder / name)
    metadata = read_json(export_dir / METADATA_FILE)
    run_dir = metadata.get("run_dir")
    # the published copy names the source folders, not where they lie on this machine
    public = {**metadata, **{key: Path(metadata[key]).name for key in ("source", "run_dir") if metadata.get(key)}}
    write_json(folder / METADATA_FILE, public)
    report, config = read_run(Path(run_dir) if run_dir and Path(run_dir).is_dir() else None)
    write_card(folder, card_text(export_facts(metadata), report, config, repo_id))
    return "onnx"


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
