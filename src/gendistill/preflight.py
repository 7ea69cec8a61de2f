"""Check everything a run will read before any expensive work starts, so a typo fails in seconds, not after an
hour of teacher training."""

from __future__ import annotations

from pathlib import Path

from gendistill.config import RunConfig, SourceKind
from gendistill.data import _column, load_task_from_config, read_table
from gendistill.errors import ModelLoadError
from gendistill.hub import from_pretrained


def check_model(name: str, what: str, trust_remote_code: bool) -> None:
    """A local folder must hold a config.json; a Hub id must be resolvable (fails fast when offline)."""
    from transformers import AutoConfig

    path = Path(name)
    if path.exists() and not (path / "config.json").exists():
        raise ModelLoadError(
            f"{what} {name!r}: the folder has no config.json; pass a folder written by "
            "save_pretrained (or `huggingface-cli download`)"
        )
    from_pretrained(AutoConfig.from_pretrained, name, what, trust_remote_code=trust_remote_code)


def preflight(config: RunConfig, stages: set[str]) -> None:
    """Validate the inputs of the stages about to run (data always: every later stage depends on it)."""
    load_task_from_config(config.data)
    if "generate" in stages:
        for source in config.transfer.sources:
            if source.type == SourceKind.file.value and source.path:
                frame = read_table(source.path, "transfer")
                _column(frame, source.text_column, source.path, "text")
    if "teacher" in stages or "label" in stages:
        check_model(config.teacher.model, "teacher model", config.teacher.trust_remote_code)
    if "generator" in stages and config.uses_generator() and config.generator.model != "scratch":
        check_model(config.generator.model, "generator model", config.generator.trust_remote_code)
