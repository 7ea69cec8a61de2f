"""The runner: one run directory, its manifest, skip-if-done, force, adopt and resume, under an exclusive lock.

It knows stages only as registered `Stage` records (pipeline/graph.py). A stage is skipped when the manifest holds a
finished record with the key the current config gives it; keys chain through upstream stages, so a change reruns
exactly the stages whose output it can change, and everything after them.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout
from pydantic import ValidationError

from gendistill import __version__, progress
from gendistill.config import RunConfig
from gendistill.errors import RunDirError
from gendistill.evaluation.report import Report
from gendistill.io import read_json, remove_path, stable_hash, tree_sha256, write_json, write_text
from gendistill.pipeline.context import StageContext
from gendistill.pipeline.graph import Stage, downstream, pipeline
from gendistill.pipeline.layout import RunLayout
from gendistill.pipeline.preflight import preflight
from gendistill.runtime import make_accelerator
from gendistill.sections import key_payload
from gendistill.training.checkpoint import STATE_FILE

MANIFEST_FORMAT = 2  # 2: per-field stage keys, the `transfer` stage (format 1 called it `generate`)
FINISHED = ("done", "skipped")


def _versions() -> dict[str, str]:
    import accelerate
    import tokenizers
    import torch
    import transformers

    return {
        "gendistill": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "tokenizers": tokenizers.__version__,
    }


def force_choices() -> list[str]:
    return [*(stage.name for stage in pipeline()), "all", "changed"]


class Run:
    """One run directory: its config, manifest and the keys and records of its stages."""

    def __init__(self, config: RunConfig, run_dir: str | Path):
        self.config = config
        self.layout = RunLayout(Path(run_dir))
        self.dir = self.layout.root
        self.manifest = self._read_manifest()
        self.invocation = _now()
        self._accelerator = None
        self._lock_depth = 0
        self._lock: Any = None

    # ---- manifest --------------------------------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Any]:
        path = self.layout.manifest
        try:
            if not path.exists():
                return {"format": MANIFEST_FORMAT, "stages": {}}
            manifest = read_json(path)
        except (OSError, ValueError) as error:
            raise RunDirError(
                f"{path}: cannot be read ({type(error).__name__}: {str(error)[:120]}); the run directory is damaged: "
                "delete it or choose another --run-dir"
            ) from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("stages"), dict):
            raise RunDirError(
                f"{path}: not a gendistill manifest; delete the run directory or choose another --run-dir"
            )
        if manifest.get("format", 1) != MANIFEST_FORMAT:
            raise RunDirError(
                f"{self.dir}: made by an older gendistill (run-directory format {manifest.get('format', 1)}, this "
                f"version reads format {MANIFEST_FORMAT}); start a new --run-dir, or delete this one"
            )
        return manifest

    def save_manifest(self) -> None:
        if self.is_main:
            write_json(self.layout.manifest, self.manifest)

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        return self.manifest["stages"]

    def is_done(self, stage: str, key: str) -> bool:
        record = self.records.get(stage, {})
        return record.get("status") in FINISHED and record.get("key") == key

    # ---- keys ------------------------------------------------------------------------------------------------
    def stage_key(self, stage: Stage, upstream_keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if not stage.applies(self.config):
            return {"key": stable_hash(["not applicable", stage.name]), "applies": False}
        fields = key_payload(stage.key_fields(self.config))
        inputs = {spec: _input_hash(spec) for spec in stage.inputs(self.config)}
        derived = stage.derived(self.records) if stage.derived else None
        upstream = {name: upstream_keys[name]["key"] for name in stage.upstream}
        return {
            "key": stable_hash([stage.name, fields, inputs, derived, upstream]),
            "applies": True,
            "fields": fields,
            "config_hash": stable_hash(fields),
            "input_hashes": {**inputs, **{f"stage:{name}": key for name, key in upstream.items()}},
            **({"derived": derived} if derived is not None else {}),
        }

    def keys(self) -> dict[str, dict[str, Any]]:
        """Each stage's key under the current config (derived values as the manifest records them now)."""
        computed: dict[str, dict[str, Any]] = {}
        for stage in pipeline():
            computed[stage.name] = self.stage_key(stage, computed)
        return computed

    # ---- the run directory -----------------------------------------------------------------------------------
    def _make_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not self.dir.is_dir():
                raise NotADirectoryError(str(self.dir))
        except (FileExistsError, NotADirectoryError):
            raise RunDirError(
                f"{self.dir}: exists and is not a directory (or is under a file); choose another --run-dir"
            ) from None
        except OSError as error:
            raise RunDirError(f"{self.dir}: cannot be used as a run directory ({error.strerror or error})") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run directory's exclusive lock (re-entrant within this object). The lock is an OS file lock,
        released by the kernel when its process dies, so a run killed with SIGKILL never blocks the next one."""
        if not self.is_main:
            yield
            return
        if self._lock_depth == 0:
            self._make_dir()
            lock = FileLock(str(self.layout.lock), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                owner = _read_owner(self.layout.lock_owner)
                raise RunDirError(
                    f"{self.dir} is in use by another gendistill process ({owner}); wait for it to finish or choose "
                    "another --run-dir"
                ) from None
            self._lock = lock
            write_json(self.layout.lock_owner, {"pid": os.getpid(), "host": platform.node(), "started_at": _now()})
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock is not None:
                self.layout.lock_owner.unlink(missing_ok=True)
                self._lock.release()
                self._lock = None

    def _accept_config(self, force: list[str], keys: dict[str, dict[str, Any]]) -> None:
        """Refuse a config that would redo finished work unless forced; accept a new one when nothing finished
        (a run refused by its checks) or when the change touches no finished stage's key (knobs)."""
        saved = self.layout.config
        if not saved.exists():
            return
        finished = {name for name, record in self.records.items() if record.get("status") in FINISHED}
        new_text = self.config.to_yaml()
        try:
            old_text = saved.read_text(encoding="utf-8")
            if old_text == new_text:
                return
            old = RunConfig.model_validate(yaml.safe_load(old_text))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError, TypeError) as error:
            if not finished:
                return
            raise RunDirError(
                f"{saved}: cannot be read as a gendistill config ({type(error).__name__}); the run directory is "
                "damaged: delete it or choose another --run-dir"
            ) from None
        changed = _diff(old.model_dump(mode="json"), self.config.model_dump(mode="json"))
        affected = [name for name in finished if keys.get(name, {}).get("key") != self.records[name].get("key")]
        if not finished or not affected:
            if finished and changed:
                progress.log(f"config change affects no finished stage ({', '.join(changed[:5])}): nothing reruns")
            return
        if force:
            return
        raise RunDirError(
            f"{self.dir} was made with a different config (changed: {', '.join(changed[:5]) or 'format'}; would "
            f"rerun: {', '.join(affected)}); pass --force changed to rerun only the stages the change affects, "
            "--force all to start over, or choose a new --run-dir"
        )

    # ---- running ---------------------------------------------------------------------------------------------
    def run(self, force: list[str] | None = None, only: str | None = None, until: str | None = None) -> Report | None:
        """Run every stage that is not done (or just `only`, or the stages up to `until`); `force` names stages to
        rerun ('all' for all)."""
        force = list(force or [])
        stages = pipeline()
        names = [stage.name for stage in stages]
        if until is not None:
            if until not in names:
                raise RunDirError(f"until={until!r}: expected one of {', '.join(names)}")
            stages = stages[: names.index(until) + 1]
            names = names[: names.index(until) + 1]
        forced = set(names) if "all" in force else {name for name in force if name in names}
        with self.locked():
            keys = self.keys()
            self._accept_config(force, keys)
            if only is None:
                pending = {
                    name
                    for name in names
                    if keys[name]["applies"] and (name in forced or not self.is_done(name, keys[name]["key"]))
                }
                checked = (downstream(pending) & set(names)) if pending else set()
            else:
                checked = {only}
            if checked:
                preflight(self.config, checked)
            if self.is_main:  # only once the checks passed: a refused run leaves no config behind
                write_text(self.layout.config, self.config.to_yaml())
            needed = _upstream_closure(only) if only is not None else set()
            ran: set[str] = set()
            for stage in stages:
                key = keys[stage.name] = self.stage_key(stage, keys)  # derived values may have changed this run
                if only is not None and stage.name != only:
                    if stage.name in needed and key["applies"] and not self.is_done(stage.name, key["key"]):
                        raise RunDirError(
                            f"stage {stage.name!r} has not finished in {self.dir}; run it first "
                            f"({stage.command_line(self.layout)})"
                        )
                    continue
                if not key["applies"]:
                    if only is not None:
                        raise RunDirError(
                            f"stage {stage.name!r} is not part of this run: its config does not use it "
                            f"(see {self.layout.config})"
                        )
                    self._retire(stage, key)
                    continue
                upstream_reran = any(name in ran for name in stage.upstream)
                if (
                    only is None
                    and stage.name not in forced
                    and not upstream_reran
                    and self.is_done(stage.name, key["key"])
                ):
                    progress.log(f"[dim]skip[/dim] {stage.name} (done, unchanged)")
                    continue
                self._run_stage(stage, key)
                ran.add(stage.name)
                if only is not None:
                    self._mark_downstream_stale(stage.name)
        return Report.read(self.layout.report_json) if self.layout.report_json.exists() else None

    def _retire(self, stage: Stage, key: dict[str, Any]) -> None:
        """A stage that does not apply to this config (no source needs the LM, no baseline): its old outputs go,
        so nothing downstream can read them."""
        if self.records.get(stage.name, {}).get("key") == key["key"]:
            return
        for path in stage.outputs(self.layout):
            remove_path(path)
        self.records[stage.name] = {"status": "skipped", "key": key["key"], "applies": False, "finished_at": _now()}
        self.save_manifest()

    def _run_stage(self, stage: Stage, key: dict[str, Any]) -> None:
        previous = self.records.get(stage.name, {})
        resuming = previous.get("status") == "running" and previous.get("key") == key["key"]
        if resuming:
            progress.log(resume_message(stage.name, stage.outputs(self.layout), self.layout.checkpoints(stage.name)))
        elif self.is_main:  # a fresh run must not mix in outputs made under another config or teacher
            for path in stage.outputs(self.layout):
                remove_path(path)
        record = {"status": "running", **key, "started_at": _now(), "invocation": self.invocation}
        self.records[stage.name] = record
        self.save_manifest()
        distributed = _distributed()
        if distributed:  # no process may write before the main one has cleared the old outputs
            self.accelerator.wait_for_everyone()
        progress.log(f"[bold]{stage.name}[/bold] ...")
        context = StageContext(stage.name, self.config, self.layout, self.records, self.invocation, self)
        start = time.perf_counter()
        outcome = (stage.body(context) or {}) if stage.processes == "all" or self.is_main else {}
        if distributed:
            self.accelerator.wait_for_everyone()
        seconds = time.perf_counter() - start
        record.update(
            status=outcome.pop("status", "done"),
            seconds=round(seconds, 2),
            finished_at=_now(),
            versions=_versions(),
            summary=outcome,
        )
        self.save_manifest()
        if distributed:  # every process continues from the main process's records (derived keys read them)
            self.accelerator.wait_for_everyone()
            self.manifest = read_json(self.layout.manifest)
        if self.is_main:
            for path in stage.outputs(self.layout):  # training checkpoints are only for resuming this stage
                if Path(path).is_relative_to(self.dir / "checkpoints"):
                    remove_path(path)
        progress.log(f"[green]done[/green] {stage.name} in {seconds:.1f}s")

    def _mark_downstream_stale(self, name: str) -> None:
        """After one stage reran alone, later stages that used its old output must rerun."""
        for later in downstream({name}) - {name}:
            if later in self.records and self.records[later].get("status") in FINISHED:
                self.records[later]["status"] = "stale"
        self.save_manifest()

    def adopt(self, source_dir: str | Path, stages: tuple[str, ...]) -> list[str]:
        """Reuse finished stages of another run directory instead of recomputing them: where the other run's
        record has the key this config gives the stage, its outputs are linked here and its record copied.
        Returns the stages adopted (a stage whose key differs is left to run)."""
        source_dir = Path(source_dir).resolve()
        source_layout = RunLayout(source_dir)
        source = Run(self.config, source_dir).records  # also refuses an old-format source
        adopted = []
        with self.locked():
            keys = self.keys()
            by_name = {stage.name: stage for stage in pipeline()}
            for name in stages:
                record = source.get(name, {})
                if record.get("key") != keys[name]["key"] or record.get("status") not in FINISHED:
                    continue
                if not self.is_done(name, keys[name]["key"]):
                    mine, theirs = by_name[name].outputs(self.layout), by_name[name].outputs(source_layout)
                    for target, origin in zip(mine, theirs, strict=True):
                        if Path(origin).is_relative_to(source_dir / "checkpoints") or not Path(origin).exists():
                            continue
                        remove_path(target)
                        Path(target).parent.mkdir(parents=True, exist_ok=True)
                        Path(target).symlink_to(origin, target_is_directory=Path(origin).is_dir())
                    self.records[name] = {**record, "adopted_from": str(source_dir)}
                adopted.append(name)
            self.save_manifest()
        return adopted

    # ---- runtime ---------------------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        """Under `accelerate launch` only the main process writes files and runs the non-training stages."""
        return True if not _distributed() else self.accelerator.is_main_process

    @property
    def accelerator(self) -> Any:
        if self._accelerator is None:
            self._accelerator = make_accelerator(
                self.config.device, self.config.mixed_precision, self.config.seed, self.config.report_to, self.dir
            )
        return self._accelerator


def resume_message(name: str, outputs: tuple[Any, ...], checkpoints: Path) -> str:
    """What rerunning a stage that did not finish will do, said truthfully: a training stage (one whose outputs
    hold its checkpoint folder) resumes only from a complete checkpoint, so one killed before its first checkpoint
    starts its training over; any other stage resumes from whatever its last attempt saved (shards, answers)."""
    paths = [Path(path) for path in outputs]
    if checkpoints in paths:
        if any(checkpoints.rglob(STATE_FILE)):
            return f"resuming {name} from its last checkpoint"
        return f"{name}: the last attempt stopped before its first checkpoint; starting its training over"
    if any(path.is_file() or (path.is_dir() and any(path.iterdir())) for path in paths):
        return f"resuming {name} from what its last attempt saved"
    return f"{name}: the last attempt saved nothing; starting it over"


def _upstream_closure(name: str) -> set[str]:
    stages = {stage.name: stage for stage in pipeline()}
    out: set[str] = set()
    todo = list(stages[name].upstream)
    while todo:
        current = todo.pop()
        if current not in out:
            out.add(current)
            todo.extend(stages[current].upstream)
    return out


def _input_hash(spec: str) -> str:
    """Content hash of a local file or folder; a Hub id or `hf:` dataset is keyed by its name."""
    if not spec.startswith("hf:") and Path(spec).exists():
        return tree_sha256(spec)
    return spec


def _read_owner(path: Path) -> str:
    try:
        owner = read_json(path)
        return f"pid {owner['pid']} on {owner['host']}, since {owner['started_at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        changed = []
        for key in sorted(set(old) | set(new)):
            changed += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return changed
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [c for i, (a, b) in enumerate(zip(old, new, strict=True)) for c in _diff(a, b, f"{prefix}{i}.")]
    return [prefix.rstrip(".")] if old != new else []


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def run_dir_for(name: str, parent: str | Path = "runs") -> Path:
    """runs/NAME for a run name, refusing names that would land outside `parent` (separators, '..', absolute)."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise RunDirError(
            f"run name {name!r}: use letters, digits, '.', '_' and '-' only (no path separators or "
            "'..'); pass --run-dir for an explicit folder"
        )
    parent_path = Path(parent).resolve()
    target = (parent_path / name).resolve()
    if target.parent != parent_path:
        raise RunDirError(f"run name {name!r} resolves outside {parent_path}")
    return Path(parent) / name


def run(config: RunConfig, run_dir: str | Path | None = None, force: list[str] | None = None) -> Report:
    """Run generation-distillation end to end (skipping finished, unchanged stages); returns the report.
    Without `run_dir`, the run goes to runs/run-<hash of the config>."""
    if run_dir is None:
        run_dir = run_dir_for(f"run-{config.section_hash('data', 'teacher', 'generator', 'transfer', 'student')[:10]}")
    report = Run(config, run_dir).run(force=force)
    if report is None:
        raise RunDirError(f"{run_dir}: the run finished without a report")
    return report
