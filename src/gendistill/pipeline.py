"""The stage graph of generation-distillation, the run directory and its manifest, skip-if-done and resume.

data -> teacher ----------------------------> label -> distill -> evaluate
     -> generator -> generate (transfer set) ->

Each stage has a key: a hash of its config sections, its external inputs (data files) and its upstream stages'
keys. A stage whose key matches the manifest's record of a finished run is skipped; a changed stage reruns and,
because keys chain, so does everything after it.
"""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from gendistill import __version__, progress
from gendistill.config import RunConfig, SourceKind
from gendistill.errors import RunDirError
from gendistill.io import read_json, remove_path, stable_hash, tree_sha256, write_json, write_text
from gendistill.stages import StageBodies

STAGES = ("data", "teacher", "generator", "generate", "label", "distill", "evaluate")
UPSTREAM = {
    "data": (),
    "teacher": ("data",),
    "generator": ("data",),
    "generate": ("data", "generator"),
    "label": ("teacher", "generate"),
    "distill": ("label", "teacher"),
    "evaluate": ("distill", "teacher", "data"),
}
SECTIONS = {
    "data": ("data",),
    "teacher": ("teacher", "seed"),
    "generator": ("generator", "seed"),
    "generate": ("transfer", "generator", "seed"),
    "label": (),
    "distill": ("student", "seed"),
    "evaluate": ("evaluate",),
}
FORCE_CHOICES = (*STAGES, "all", "changed")
TRAINING_STAGES = ("teacher", "generator", "distill")  # run on every process under `accelerate launch`
OUTPUTS = {  # what each stage writes; cleared before a fresh (non-resumed) run of the stage
    "data": ("data",),
    "teacher": ("teacher", "teacher.tmp", "checkpoints/teacher", "checkpoints/teacher.tmp"),
    "generator": ("generator", "generator.tmp", "checkpoints/generator", "checkpoints/generator.tmp"),
    "generate": ("transfer",),
    "label": ("labels",),
    "distill": ("student", "baseline_student", "checkpoints/distill"),
    "evaluate": ("report.json", "report.md"),
}


def _versions() -> dict[str, str]:
    import accelerate
    import tokenizers
    import transformers

    return {
        "gendistill": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "tokenizers": tokenizers.__version__,
    }


@dataclass
class Report:
    """The run's report.json content, with where it was written."""

    data: dict[str, Any]
    path: Path

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def markdown_path(self) -> Path:
        return self.path.with_name("report.md")


class Run(StageBodies):
    """One run directory: its config, manifest and the order, keys and records of its stages."""

    def __init__(self, config: RunConfig, run_dir: str | Path):
        self.config = config
        self.dir = Path(run_dir)
        self.manifest_path = self.dir / "manifest.json"
        self.manifest: dict[str, Any] = read_json(self.manifest_path) if self.manifest_path.exists() else {"stages": {}}
        self._accelerator = None

    # ---- keys and manifest -------------------------------------------------------------------------------
    def external_inputs(self, stage: str) -> dict[str, str]:
        """Hashes of the user files a stage reads (data files, file transfer sources, local model folders)."""
        inputs: dict[str, str] = {}

        def add(spec: str | None) -> None:
            if spec and not spec.startswith("hf:") and Path(spec).exists():
                inputs[spec] = tree_sha256(spec)
            elif spec:
                inputs[spec] = spec

        data = self.config.data
        if stage == "data":
            for spec in (data.train, data.test, data.validation):
                add(spec)
            if isinstance(data.label_names, str):
                add(data.label_names)
            elif data.label_names is None and not data.train.startswith("hf:"):
                labels_json = Path(data.train).with_name("labels.json")
                if labels_json.exists():
                    add(str(labels_json))
        elif stage == "teacher":
            add(self.config.teacher.model)
        elif stage == "generator" and self.config.generator.model != "scratch" and self.config.uses_generator():
            add(self.config.generator.model)
        elif stage == "generate":
            for source in self.config.transfer.sources:
                if source.type == SourceKind.file.value:
                    add(source.path)
        return inputs

    def keys(self) -> dict[str, dict[str, Any]]:
        computed: dict[str, dict[str, Any]] = {}
        for stage in STAGES:
            config_hash = self.config.section_hash(*SECTIONS[stage]) if SECTIONS[stage] else stable_hash({})
            if stage == "generator" and not self.config.uses_generator():
                config_hash = stable_hash("unused")
            inputs = self.external_inputs(stage)
            upstream = {name: computed[name]["key"] for name in UPSTREAM[stage]}
            computed[stage] = {
                "key": stable_hash([config_hash, inputs, upstream]),
                "config_hash": config_hash,
                "input_hashes": {**inputs, **{f"stage:{k}": v for k, v in upstream.items()}},
            }
        return computed

    def save_manifest(self) -> None:
        if self.is_main:
            write_json(self.manifest_path, self.manifest)

    @property
    def is_main(self) -> bool:
        """Under `accelerate launch` only the main process writes files and runs the non-training stages."""
        return True if not _distributed() else self.accelerator.is_main_process

    def is_done(self, stage: str, key: str) -> bool:
        record = self.manifest["stages"].get(stage, {})
        return record.get("status") in ("done", "skipped") and record.get("key") == key

    # ---- run ---------------------------------------------------------------------------------------------
    def prepare_dir(self, force: list[str]) -> None:
        """Create the run directory; refuse one made with another config unless forced."""
        self.dir.mkdir(parents=True, exist_ok=True)
        saved = self.dir / "config.yaml"
        new = self.config.to_yaml()
        if saved.exists() and saved.read_text(encoding="utf-8") != new and not force:
            import yaml

            old = RunConfig.model_validate(yaml.safe_load(saved.read_text(encoding="utf-8")))
            changed = _diff(old.model_dump(mode="json"), self.config.model_dump(mode="json"))
            raise RunDirError(
                f"{self.dir} was made with a different config (changed: {', '.join(changed[:5]) or 'format'}); "
                "pass --force changed to rerun only the stages the change affects, --force all to start over, "
                "or choose a new --run-dir"
            )
        write_text(saved, new)

    def run(self, force: list[str] | None = None, only: str | None = None, until: str | None = None) -> Report | None:
        """Run every stage that is not done (or just `only`, or the stages up to `until`); `force` names stages to
        rerun ('all' for all)."""
        force = list(force or [])
        self.prepare_dir(force)
        keys = self.keys()
        forced = set(STAGES) if "all" in force else {stage for stage in force if stage in STAGES}
        stages = STAGES[: STAGES.index(until) + 1] if until else STAGES
        if only is None:
            pending = {s for s in stages if s in forced or not self.is_done(s, keys[s]["key"])}
            if pending:
                from gendistill.preflight import preflight

                preflight(self.config, _with_downstream(pending))
        ran: set[str] = set()
        for stage in stages:
            if only is not None and stage != only:
                if (
                    stage not in ran
                    and not self.is_done(stage, keys[stage]["key"])
                    and STAGES.index(stage) < STAGES.index(only)
                ):
                    raise RunDirError(
                        f"stage {stage!r} has not finished in {self.dir}; run it first "
                        f"(gendistill {_command(stage)} {self.dir}) or use gendistill run"
                    )
                continue
            upstream_reran = any(name in ran for name in UPSTREAM[stage])
            if only is None and not (stage in forced or upstream_reran) and self.is_done(stage, keys[stage]["key"]):
                progress.log(f"[dim]skip[/dim] {stage} (done, unchanged)")
                continue
            self._run_stage(stage, keys[stage])
            ran.add(stage)
            if only is not None:
                self._mark_downstream_stale(stage)
        report_path = self.dir / "report.json"
        return Report(read_json(report_path), report_path) if report_path.exists() else None

    def adopt(self, source_dir: str | Path, stages: tuple[str, ...]) -> list[str]:
        """Reuse finished stages of another run directory instead of recomputing them: where the other run's
        record has the key this config gives the stage, its outputs are linked here and its record copied.
        Returns the stages adopted (a stage whose key differs is left to run)."""
        source_dir = Path(source_dir).resolve()
        source = read_json(source_dir / "manifest.json")["stages"]
        keys = self.keys()
        self.dir.mkdir(parents=True, exist_ok=True)
        adopted = []
        for stage in stages:
            record = source.get(stage, {})
            if record.get("key") != keys[stage]["key"] or record.get("status") not in ("done", "skipped"):
                continue
            if self.is_done(stage, keys[stage]["key"]):
                adopted.append(stage)
                continue
            for name in OUTPUTS[stage]:
                if name.startswith("checkpoints/") or not (source_dir / name).exists():
                    continue
                remove_path(self.dir / name)
                (self.dir / name).symlink_to(source_dir / name, target_is_directory=(source_dir / name).is_dir())
            self.manifest["stages"][stage] = {**record, "adopted_from": str(source_dir)}
            adopted.append(stage)
        self.save_manifest()
        return adopted

    def _mark_downstream_stale(self, stage: str) -> None:
        """After one stage reran alone, later stages that used its old output must rerun."""
        stale = {stage}
        for later in STAGES[STAGES.index(stage) + 1 :]:
            if any(name in stale for name in UPSTREAM[later]):
                stale.add(later)
                if later in self.manifest["stages"]:
                    self.manifest["stages"][later]["status"] = "stale"
        self.save_manifest()

    def _run_stage(self, stage: str, key: dict[str, Any]) -> None:
        previous = self.manifest["stages"].get(stage, {})
        resuming = previous.get("status") == "running" and previous.get("key") == key["key"]
        if resuming:
            progress.log(f"resuming {stage} from its last checkpoint")
        else:  # a fresh run must not mix in outputs made under another config or teacher
            for name in OUTPUTS[stage]:
                remove_path(self.dir / name)
        record = {"status": "running", **key, "started_at": _now()}
        self.manifest["stages"][stage] = record
        self.save_manifest()
        progress.log(f"[bold]{stage}[/bold] ...")
        start = time.perf_counter()
        runs_here = stage in TRAINING_STAGES or self.is_main  # other processes wait at the barrier below
        outcome = (getattr(self, f"stage_{stage}")() or {}) if runs_here else {}
        if _distributed():
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
        for name in OUTPUTS[stage]:  # training checkpoints are only for resuming this stage
            if name.startswith("checkpoints/"):
                remove_path(self.dir / name)
        progress.log(f"[green]done[/green] {stage} in {seconds:.1f}s")

    @property
    def accelerator(self):
        if self._accelerator is None:
            from gendistill.runtime import make_accelerator

            self._accelerator = make_accelerator(self.config.device, self.config.mixed_precision, self.config.seed)
        return self._accelerator


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _with_downstream(stages: set[str]) -> set[str]:
    out = set(stages)
    for stage in STAGES:
        if any(name in out for name in UPSTREAM[stage]):
            out.add(stage)
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _command(stage: str) -> str:
    return {"teacher": "train-teacher", "generator": "train-generator"}.get(stage, stage)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        changed = []
        for key in sorted(set(old) | set(new)):
            changed += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return changed
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
    assert report is not None
    return report
