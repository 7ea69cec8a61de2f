"""The stage graph of generation-distillation, the run directory and its manifest, skip-if-done and resume.

data -> teacher ----------------------------> label -> distill -> evaluate
     -> generator -> generate (transfer set) ->

Each stage has a key: a hash of its config sections, its external inputs (data files) and its upstream stages'
keys. A stage whose key matches the manifest's record of a finished run is skipped; a changed stage reruns and,
because keys chain, so does everything after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from gendistill import __version__, progress
from gendistill.checkpoint import kill_point
from gendistill.config import RunConfig, SourceKind
from gendistill.data import LabeledSet, TaskData, load_task
from gendistill.errors import RunDirError
from gendistill.io import read_json, texts_sha256, tree_sha256, write_json, write_parquet, write_text

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

    return {"gendistill": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "tokenizers": tokenizers.__version__}


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


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


class Run:
    """One run directory: its config, manifest and stages."""

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
            config_hash = self.config.section_hash(*SECTIONS[stage]) if SECTIONS[stage] else _hash({})
            if stage == "generator" and not self.config.uses_generator():
                config_hash = _hash("unused")
            inputs = self.external_inputs(stage)
            upstream = {name: computed[name]["key"] for name in UPSTREAM[stage]}
            computed[stage] = {"key": _hash([config_hash, inputs, upstream]), "config_hash": config_hash,
                               "input_hashes": {**inputs, **{f"stage:{k}": v for k, v in upstream.items()}}}
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

    def run(self, force: list[str] | None = None, only: str | None = None) -> Report | None:
        """Run every stage that is not done (or just `only`); `force` names stages to rerun ('all' for all)."""
        force = list(force or [])
        self.prepare_dir(force)
        keys = self.keys()
        forced = set(STAGES) if "all" in force else {stage for stage in force if stage in STAGES}
        if only is None:
            pending = {s for s in STAGES if s in forced or not self.is_done(s, keys[s]["key"])}
            if pending:
                from gendistill.preflight import preflight

                preflight(self.config, _with_downstream(pending))
        ran: set[str] = set()
        for stage in STAGES:
            if only is not None and stage != only:
                if stage not in ran and not self.is_done(stage, keys[stage]["key"]) and STAGES.index(stage) < STAGES.index(only):
                    raise RunDirError(f"stage {stage!r} has not finished in {self.dir}; run it first "
                                      f"(gendistill {_command(stage)} {self.dir}) or use gendistill run")
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
                _remove(self.dir / name)
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
                _remove(self.dir / name)
        record = {"status": "running", **key, "started_at": _now()}
        self.manifest["stages"][stage] = record
        self.save_manifest()
        progress.log(f"[bold]{stage}[/bold] ...")
        start = time.perf_counter()
        if stage in TRAINING_STAGES or self.is_main:
            outcome = getattr(self, f"stage_{stage}")() or {}
        else:
            outcome = {}
        if _distributed():
            self.accelerator.wait_for_everyone()
        seconds = time.perf_counter() - start
        record.update(status=outcome.pop("status", "done"), seconds=round(seconds, 2), finished_at=_now(),
                      versions=_versions(), summary=outcome)
        self.save_manifest()
        for name in OUTPUTS[stage]:  # training checkpoints are only for resuming this stage
            if name.startswith("checkpoints/"):
                _remove(self.dir / name)
        progress.log(f"[green]done[/green] {stage} in {seconds:.1f}s")

    def _teacher_test_logits(self, teacher: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
        return _teacher_test_logits_cached(self, teacher, tokenizer, texts)

    @property
    def accelerator(self):
        if self._accelerator is None:
            from gendistill.runtime import make_accelerator

            self._accelerator = make_accelerator(self.config.device, self.config.mixed_precision, self.config.seed)
        return self._accelerator

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    # ---- data --------------------------------------------------------------------------------------------
    def stage_data(self) -> dict[str, Any]:
        data = self.config.data
        task = load_task(data.train, data.test, data.validation, data.text_column, data.label_column,
                         data.label_names, data.per_class, data.seed, data.max_chars, data.skip_invalid_rows)
        for name, split in (("train", task.train), ("test", task.test), ("validation", task.validation)):
            path = self.dir / "data" / f"{name}.parquet"
            if split is None:
                path.unlink(missing_ok=True)
                continue
            write_parquet(path, pa.table({"text": split.texts, "label": split.labels}))
        stats = {"label_names": task.label_names, "train": len(task.train), "pool": task.pool_size,
                 "test": len(task.test) if task.test else 0,
                 "validation": len(task.validation) if task.validation else 0,
                 "truncated": task.train.truncated + sum(s.truncated for s in (task.test, task.validation) if s),
                 "notes": task.notes}
        write_json(self.dir / "data" / "labels.json", task.label_names)
        write_json(self.dir / "data" / "stats.json", stats)
        for note in task.notes:
            progress.log(f"[yellow]warning[/yellow]: {note}")
        return stats

    def task(self) -> TaskData:
        def split(name: str) -> LabeledSet | None:
            path = self.dir / "data" / f"{name}.parquet"
            if not path.exists():
                return None
            table = pq.read_table(path)
            return LabeledSet(table.column("text").to_pylist(), table.column("label").to_pylist())

        train = split("train")
        assert train is not None
        return TaskData(train, split("test"), split("validation"), read_json(self.dir / "data" / "labels.json"))

    # ---- teacher -----------------------------------------------------------------------------------------
    def stage_teacher(self) -> dict[str, Any]:
        from gendistill.teacher import train_teacher

        task = self.task()
        return train_teacher(self.config.teacher, task.train, task.label_names, self.dir / "teacher",
                             self.accelerator, self.config.seed, self.dir / "checkpoints" / "teacher")

    # ---- generator ---------------------------------------------------------------------------------------
    def stage_generator(self) -> dict[str, Any]:
        if not self.config.uses_generator():
            _remove(self.dir / "generator")
            return {"status": "skipped", "reason": "no 'generate' transfer source"}
        from gendistill.generator import train_generator

        task = self.task()
        return train_generator(self.config.generator, task.train.texts, task.train.labels, task.label_names,
                               self.dir / "generator", self.accelerator, self.config.seed,
                               self.dir / "checkpoints" / "generator")

    # ---- generate (the transfer set) ---------------------------------------------------------------------
    def stage_generate(self) -> dict[str, Any]:
        from gendistill.transfer import (
            TextFilter,
            build_augment_source,
            build_file_source,
            build_generated_source,
            normalize,
            source_dir,
        )

        task = self.task()
        root = self.dir / "transfer"
        expected = {source_dir(root, i, s).name for i, s in enumerate(self.config.transfer.sources)}
        if root.exists():  # sources removed from the config leave nothing behind
            for child in root.iterdir():
                if child.name not in expected:
                    _remove(child)
        training = {normalize(t) for t in task.train.texts}
        text_filter = TextFilter(self.config.transfer.filters, training)
        summaries = []
        sampler_cache: dict[str, Any] = {}
        for index, source in enumerate(self.config.transfer.sources):
            directory = source_dir(root, index, source)
            directory.mkdir(parents=True, exist_ok=True)
            if source.type == SourceKind.generate.value:
                summary = build_generated_source(directory, index, source, self._sampler(task, sampler_cache),
                                                 text_filter, self.config.transfer.shard_size, self.config.seed)
            elif source.type == SourceKind.augment.value:
                summary = build_augment_source(directory, index, source, text_filter, task.train.texts,
                                               self.config.transfer.shard_size, self.config.seed)
            else:
                summary = build_file_source(directory, index, source, text_filter, training,
                                            self.config.transfer.shard_size, self.config.seed, self.config.data.max_chars)
            summaries.append(summary.to_dict())
            if summary.note:
                progress.log(f"[yellow]warning[/yellow]: source {index} ({source.type}): {summary.note}")
        result = {"sources": summaries, "kept": sum(s["kept"] for s in summaries)}
        write_json(root / "summary.json", result)
        return result

    def _sampler(self, task: TaskData, cache: dict[str, Any]):
        from gendistill.generator import load_generator, sample_texts

        if "model" not in cache:
            cache["model"], cache["tokenizer"] = load_generator(self.dir / "generator", self.device,
                                                                self.config.generator.trust_remote_code)
        first_words = [t.split()[0] for t in task.train.texts if t.split()]

        def sample(n: int, seed: int) -> list[str]:
            return sample_texts(cache["model"], cache["tokenizer"], self.config.generator, n, seed, first_words,
                                task.label_names)

        return sample

    # ---- label -------------------------------------------------------------------------------------------
    def stage_label(self) -> dict[str, Any]:
        from gendistill.teacher import load_teacher, teacher_logits
        from gendistill.transfer import read_transfer_set

        teacher_config = self.config.teacher
        model, tokenizer = load_teacher(str(self.dir / "teacher"), trust_remote_code=teacher_config.trust_remote_code)
        model.to(self.device)
        task = self.task()
        out = self.dir / "labels"

        def label(texts: list[str], path: Path, extra: dict[str, list] | None = None) -> bool:
            digest = texts_sha256(texts)
            if path.exists():
                metadata = pq.read_schema(path).metadata or {}
                if metadata.get(b"texts_sha256", b"").decode() == digest:
                    return False  # labeled before an interruption: keep it, the teacher is deterministic
            logits = teacher_logits(model, tokenizer, texts, teacher_config.label_batch_size,
                                    teacher_config.max_length, self.device)
            columns = {"text": pa.array(texts, pa.string()), **(extra or {}),
                       "logits": pa.array(list(logits), pa.list_(pa.float32()))}
            write_parquet(path, pa.table(columns).replace_schema_metadata({"texts_sha256": digest}))
            return True

        label(task.train.texts, out / "train.parquet", {"label": task.train.labels})
        shards = read_transfer_set(self.dir / "transfer")
        wanted = set()
        labeled = reused = 0
        with progress.bar("label: transfer set", total=sum(len(t) for _, t in shards)) as bar:
            for shard, texts in shards:
                target = out / shard.parent.name / shard.name
                wanted.add(target)
                if label(texts, target):
                    labeled += len(texts)
                else:
                    reused += len(texts)
                bar.advance(len(texts))
                kill_point("label.shard")
        for stale in out.glob("*/shard-*.parquet"):
            if stale not in wanted:
                stale.unlink()
        return {"train": len(task.train), "transfer_labeled": labeled, "transfer_reused": reused}

    def labeled_sets(self) -> tuple[tuple[list[str], list[int], np.ndarray], tuple[list[str], np.ndarray]]:
        """((train texts, gold, teacher logits), (transfer texts, teacher logits)) from the label stage."""
        train = pq.read_table(self.dir / "labels" / "train.parquet")
        train_logits = np.asarray(train.column("logits").to_pylist(), dtype=np.float32)
        texts: list[str] = []
        logits: list[list[float]] = []
        for path in sorted((self.dir / "labels").glob("*/shard-*.parquet")):
            table = pq.read_table(path)
            texts += table.column("text").to_pylist()
            logits += table.column("logits").to_pylist()
        transfer_logits = np.asarray(logits, dtype=np.float32).reshape(len(texts), train_logits.shape[1])
        return ((train.column("text").to_pylist(), train.column("label").to_pylist(), train_logits),
                (texts, transfer_logits))

    # ---- distill -----------------------------------------------------------------------------------------
    def stage_distill(self) -> dict[str, Any]:
        from gendistill.distill import make_student, train_student
        from gendistill.students import StudentClassifier

        config = self.config.student
        task = self.task()
        (train_texts, gold, train_logits), (transfer_texts, transfer_logits) = self.labeled_sets()
        validation = (task.validation.texts, task.validation.labels) if task.validation else None
        common = {"teacher_dir": self.dir / "teacher", "teacher_base": self.config.teacher.model,
                  "device": str(self.device), "trust_remote_code": self.config.teacher.trust_remote_code}
        texts = train_texts + transfer_texts
        finished = self.dir / "student" / "training.json"
        if finished.exists():  # resuming a distill stage killed while the baseline trained: the student is done
            student = StudentClassifier.from_pretrained(self.dir / "student")
            stats = read_json(finished)
        else:
            student = make_student(config, texts, task.label_names, self.config.seed, **common)
            stats = train_student(student, texts, gold + [-1] * len(transfer_texts),
                                  np.concatenate([train_logits, transfer_logits]), config, self.accelerator,
                                  self.config.seed, validation=validation, description="student",
                                  checkpoint_dir=self.dir / "checkpoints" / "distill" / "student")
            student.info.update(run_dir=str(self.dir), kind="student")
            if self.is_main:
                student.save_pretrained(self.dir / "student")
                write_json(finished, stats)
        summary = {"student": {"params": student.num_parameters, "examples": len(texts), **_brief(stats),
                               "vocab_size": student.spec.vocab_size}}
        baseline_dir = self.dir / "baseline_student"
        if config.baseline:
            # same architecture, init and optimizer steps; labeled examples only, gold labels only
            baseline = make_student(config, train_texts, task.label_names, self.config.seed, **common)
            baseline_stats = train_student(baseline, train_texts, gold, None, config, self.accelerator,
                                           self.config.seed, steps=max(stats["steps"], 1), validation=validation,
                                           description="baseline student",
                                           checkpoint_dir=self.dir / "checkpoints" / "distill" / "baseline")
            baseline.info.update(run_dir=str(self.dir), kind="baseline_student")
            if self.is_main:
                baseline.save_pretrained(baseline_dir)
            summary["baseline_student"] = {"params": baseline.num_parameters, "examples": len(train_texts),
                                           **_brief(baseline_stats), "vocab_size": baseline.spec.vocab_size}
        else:
            _remove(baseline_dir)
        return summary

    # ---- evaluate ----------------------------------------------------------------------------------------
    def stage_evaluate(self) -> dict[str, Any]:
        from gendistill.evaluate import classification_metrics, render_markdown, throughput, weights_size
        from gendistill.students import StudentClassifier
        from gendistill.teacher import load_teacher, teacher_logits

        config = self.config.evaluate
        task = self.task()
        num_labels = len(task.label_names)
        test = task.test
        cpu = torch.device("cpu")
        report: dict[str, Any] = {"run_dir": str(self.dir), "label_names": task.label_names,
                                  "train_examples": len(task.train), "test_examples": len(test) if test else 0,
                                  "notes": []}
        speed_texts = (test.texts if test else task.train.texts)[: config.speed_examples]

        teacher, tokenizer = load_teacher(str(self.dir / "teacher"))
        teacher.to(cpu)
        teacher_predictions = None
        report["teacher"] = {"params": int(sum(p.numel() for p in teacher.parameters())),
                             "size_bytes": weights_size(self.dir / "teacher")}
        if test:
            teacher_predictions = self._teacher_test_logits(teacher, tokenizer, test.texts).argmax(axis=1)
            report["teacher"].update(classification_metrics(test.labels, teacher_predictions, num_labels))
        report["teacher"]["examples_per_s"] = throughput(
            lambda batch: teacher_logits(teacher, tokenizer, batch, config.batch_size, self.config.teacher.max_length, cpu),
            speed_texts, config.batch_size, config.threads)

        for name in ("student", "baseline_student"):
            directory = self.dir / name
            if not directory.exists():
                continue
            student = StudentClassifier.from_pretrained(directory)
            row: dict[str, Any] = {"arch": student.spec.arch, "init": student.info.get("init"),
                                   "params": student.num_parameters, "vocab_size": student.spec.vocab_size,
                                   "size_bytes": weights_size(directory)}
            if test:
                predictions = student.logits(test.texts, config.batch_size).argmax(axis=1)
                row.update(classification_metrics(test.labels, predictions, num_labels))
                row["teacher_agreement"] = float(np.mean(predictions == teacher_predictions))
            row["examples_per_s"] = throughput(lambda batch, s=student: s.logits(batch, config.batch_size),
                                               speed_texts, config.batch_size, config.threads)
            report[name] = row

        transfer_summary = self.dir / "transfer" / "summary.json"
        transfer = read_json(transfer_summary) if transfer_summary.exists() else {"sources": [], "kept": 0}
        for source in transfer["sources"]:
            source.setdefault("note", None)
        report["transfer_set"] = {**transfer, "requested": sum(s["requested"] or 0 for s in transfer["sources"]),
                                  "generated": sum(s["generated"] for s in transfer["sources"])}
        if "student" in report:
            report["ratios"] = {
                "params_teacher_over_student": report["teacher"]["params"] / report["student"]["params"],
                "size_teacher_over_student": report["teacher"]["size_bytes"] / max(report["student"]["size_bytes"], 1),
                "speed_student_over_teacher": report["student"]["examples_per_s"] / report["teacher"]["examples_per_s"],
            }
        report["speed"] = {"device": "cpu", "threads": config.threads or torch.get_num_threads(),
                           "batch_size": config.batch_size, "examples": len(speed_texts)}
        stats = read_json(self.dir / "data" / "stats.json")
        report["data"] = {"truncated_texts": stats.get("truncated", 0), "pool": stats.get("pool")}
        report["stages"] = {name: {"seconds": record.get("seconds", 0.0)} for name, record
                            in self.manifest["stages"].items() if record.get("status") in ("done", "skipped")}
        if not test:
            report["notes"].append("no test set: accuracy and macro-F1 were not measured")
        report["config_hash"] = self.config.section_hash("data", "teacher", "generator", "transfer", "student")
        write_json(self.dir / "report.json", report)
        write_text(self.dir / "report.md", render_markdown(report))
        return {key: report[key].get("accuracy") for key in ("teacher", "student", "baseline_student") if key in report}


def _teacher_test_logits_cached(run: Run, teacher: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    """The teacher's test logits, cached per (teacher, test texts) so that rerunning evaluate after a student
    change does not pay for the teacher's pass again."""
    from safetensors.numpy import load_file, save_file

    from gendistill.io import atomic_path
    from gendistill.teacher import teacher_logits

    key = _hash([run.manifest["stages"].get("teacher", {}).get("key"), texts_sha256(texts),
                 run.config.teacher.max_length])
    path = run.dir / "teacher" / ".cache" / f"test_logits-{key}.safetensors"
    if path.exists():
        return load_file(str(path))["logits"]
    logits = teacher_logits(teacher, tokenizer, texts, run.config.evaluate.batch_size, run.config.teacher.max_length,
                            torch.device("cpu"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"logits": logits}, str(tmp))
    return logits


def _remove(path: Path) -> None:
    """Delete a file, folder or symlink (never what a symlink points to: adopted outputs belong to another run)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _with_downstream(stages: set[str]) -> set[str]:
    out = set(stages)
    for stage in STAGES:
        if any(name in out for name in UPSTREAM[stage]):
            out.add(stage)
    return out


def _brief(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in ("steps", "epochs", "best_validation_accuracy") if key in stats}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
        raise RunDirError(f"run name {name!r}: use letters, digits, '.', '_' and '-' only (no path separators or "
                          "'..'); pass --run-dir for an explicit folder")
    parent_path = Path(parent).resolve()
    target = (parent_path / name).resolve()
    if target.parent != parent_path:
        raise RunDirError(f"run name {name!r} resolves outside {parent_path}")
    return Path(parent) / name


def run(config: RunConfig, run_dir: str | Path, force: list[str] | None = None) -> Report:
    """Run generation-distillation end to end (skipping finished, unchanged stages); returns the report."""
    report = Run(config, run_dir).run(force=force)
    assert report is not None
    return report
