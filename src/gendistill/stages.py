"""The body of each stage of generation-distillation: what it reads from the run directory and what it writes.

`Run` (pipeline.py) decides when a stage runs; these methods do the work, reading upstream outputs from the run
directory only, so any stage can be rerun alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from gendistill import progress
from gendistill.checkpoint import kill_point
from gendistill.config import RunConfig, SourceKind
from gendistill.data import LabeledSet, TaskData, load_task_from_config
from gendistill.io import read_json, remove_path, stable_hash, texts_sha256, write_json, write_parquet, write_text

if TYPE_CHECKING:
    from accelerate import Accelerator


class StageBodies:
    """Mixin for `Run`: one `stage_<name>` method per stage."""

    config: RunConfig
    dir: Path
    manifest: dict[str, Any]

    @property
    def accelerator(self) -> Accelerator:  # provided by Run
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        raise NotImplementedError

    def _teacher_test_logits(self, teacher: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
        """The teacher's test logits, cached per (teacher, test texts) so that rerunning evaluate after a student
        change does not pay for the teacher's pass again."""
        from safetensors.numpy import load_file, save_file

        from gendistill.io import atomic_path
        from gendistill.teacher import teacher_logits

        key = stable_hash(
            [self.manifest["stages"].get("teacher", {}).get("key"), texts_sha256(texts), self.config.teacher.max_length]
        )
        path = self.dir / "teacher" / ".cache" / f"test_logits-{key}.safetensors"
        if path.exists():
            return load_file(str(path))["logits"]
        logits = teacher_logits(
            teacher,
            tokenizer,
            texts,
            self.config.evaluate.batch_size,
            self.config.teacher.max_length,
            torch.device("cpu"),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"logits": logits}, str(tmp))
        return logits

    # ---- data --------------------------------------------------------------------------------------------
    def stage_data(self) -> dict[str, Any]:
        task = load_task_from_config(self.config.data)
        for name, split in (("train", task.train), ("test", task.test), ("validation", task.validation)):
            path = self.dir / "data" / f"{name}.parquet"
            if split is None:
                path.unlink(missing_ok=True)
                continue
            write_parquet(path, pa.table({"text": split.texts, "label": split.labels}))
        stats = {
            "label_names": task.label_names,
            "train": len(task.train),
            "pool": task.pool_size,
            "test": len(task.test) if task.test else 0,
            "validation": len(task.validation) if task.validation else 0,
            "truncated": task.train.truncated + sum(s.truncated for s in (task.test, task.validation) if s),
            "notes": task.notes,
        }
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
        return train_teacher(
            self.config.teacher,
            task.train,
            task.label_names,
            self.dir / "teacher",
            self.accelerator,
            self.config.seed,
            self.dir / "checkpoints" / "teacher",
        )

    # ---- generator ---------------------------------------------------------------------------------------
    def stage_generator(self) -> dict[str, Any]:
        if not self.config.uses_generator():
            remove_path(self.dir / "generator")
            return {"status": "skipped", "reason": "no 'generate' transfer source"}
        from gendistill.generator import train_generator

        task = self.task()
        return train_generator(
            self.config.generator,
            task.train.texts,
            task.train.labels,
            task.label_names,
            self.dir / "generator",
            self.accelerator,
            self.config.seed,
            self.dir / "checkpoints" / "generator",
        )

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
                    remove_path(child)
        training = {normalize(t) for t in task.train.texts}
        text_filter = TextFilter(self.config.transfer.filters, training)
        summaries = []
        sampler_cache: dict[str, Any] = {}
        for index, source in enumerate(self.config.transfer.sources):
            directory = source_dir(root, index, source)
            directory.mkdir(parents=True, exist_ok=True)
            if source.type == SourceKind.generate.value:
                summary = build_generated_source(
                    directory,
                    index,
                    source,
                    self._sampler(task, sampler_cache),
                    text_filter,
                    self.config.transfer.shard_size,
                    self.config.seed,
                )
            elif source.type == SourceKind.augment.value:
                summary = build_augment_source(
                    directory,
                    index,
                    source,
                    text_filter,
                    task.train.texts,
                    self.config.transfer.shard_size,
                    self.config.seed,
                )
            else:
                summary = build_file_source(
                    directory,
                    index,
                    source,
                    text_filter,
                    training,
                    self.config.transfer.shard_size,
                    self.config.seed,
                    self.config.data.max_chars,
                )
            summaries.append(summary.to_dict())
            if summary.note:
                progress.log(f"[yellow]warning[/yellow]: source {index} ({source.type}): {summary.note}")
        result = {"sources": summaries, "kept": sum(s["kept"] for s in summaries)}
        write_json(root / "summary.json", result)
        return result

    def _sampler(self, task: TaskData, cache: dict[str, Any]):
        from gendistill.generator import load_generator, sample_texts

        if "model" not in cache:
            cache["model"], cache["tokenizer"] = load_generator(
                self.dir / "generator", self.device, self.config.generator.trust_remote_code
            )
        first_words = [t.split()[0] for t in task.train.texts if t.split()]

        def sample(n: int, seed: int) -> list[str]:
            return sample_texts(
                cache["model"], cache["tokenizer"], self.config.generator, n, seed, first_words, task.label_names
            )

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
            logits = teacher_logits(
                model, tokenizer, texts, teacher_config.label_batch_size, teacher_config.max_length, self.device
            )
            columns = {
                "text": pa.array(texts, pa.string()),
                **(extra or {}),
                "logits": pa.array(list(logits), pa.list_(pa.float32())),
            }
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
        return (
            (train.column("text").to_pylist(), train.column("label").to_pylist(), train_logits),
            (texts, transfer_logits),
        )

    # ---- distill -----------------------------------------------------------------------------------------
    def stage_distill(self) -> dict[str, Any]:
        from gendistill.distill import make_student, train_student
        from gendistill.students import StudentClassifier

        config = self.config.student
        task = self.task()
        (train_texts, gold, train_logits), (transfer_texts, transfer_logits) = self.labeled_sets()
        validation = (task.validation.texts, task.validation.labels) if task.validation else None
        common = {
            "teacher_dir": self.dir / "teacher",
            "teacher_base": self.config.teacher.model,
            "device": str(self.device),
            "trust_remote_code": self.config.teacher.trust_remote_code,
        }
        texts = train_texts + transfer_texts
        finished = self.dir / "student" / "training.json"
        if finished.exists():  # resuming a distill stage killed while the baseline trained: the student is done
            student = StudentClassifier.from_pretrained(self.dir / "student")
            stats = read_json(finished)
        else:
            student = make_student(config, texts, task.label_names, self.config.seed, **common)
            stats = train_student(
                student,
                texts,
                gold + [-1] * len(transfer_texts),
                np.concatenate([train_logits, transfer_logits]),
                config,
                self.accelerator,
                self.config.seed,
                validation=validation,
                description="student",
                checkpoint_dir=self.dir / "checkpoints" / "distill" / "student",
            )
            student.info.update(run_dir=str(self.dir), kind="student")
            if self.is_main:
                student.save_pretrained(self.dir / "student")
                write_json(finished, stats)
        summary = {
            "student": {
                "params": student.num_parameters,
                "examples": len(texts),
                **_brief(stats),
                "vocab_size": student.spec.vocab_size,
            }
        }
        baseline_dir = self.dir / "baseline_student"
        if config.baseline:
            # same architecture, init and optimizer steps; labeled examples only, gold labels only
            baseline = make_student(config, train_texts, task.label_names, self.config.seed, **common)
            baseline_stats = train_student(
                baseline,
                train_texts,
                gold,
                None,
                config,
                self.accelerator,
                self.config.seed,
                steps=max(stats["steps"], 1),
                validation=validation,
                description="baseline student",
                checkpoint_dir=self.dir / "checkpoints" / "distill" / "baseline",
            )
            baseline.info.update(run_dir=str(self.dir), kind="baseline_student")
            if self.is_main:
                baseline.save_pretrained(baseline_dir)
            summary["baseline_student"] = {
                "params": baseline.num_parameters,
                "examples": len(train_texts),
                **_brief(baseline_stats),
                "vocab_size": baseline.spec.vocab_size,
            }
        else:
            remove_path(baseline_dir)
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
        report: dict[str, Any] = {
            "run_dir": str(self.dir),
            "label_names": task.label_names,
            "train_examples": len(task.train),
            "test_examples": len(test) if test else 0,
            "notes": [],
        }
        speed_texts = (test.texts if test else task.train.texts)[: config.speed_examples]

        teacher, tokenizer = load_teacher(str(self.dir / "teacher"))
        teacher.to(cpu)
        teacher_predictions = None
        report["teacher"] = {
            "params": int(sum(p.numel() for p in teacher.parameters())),
            "size_bytes": weights_size(self.dir / "teacher"),
        }
        if test:
            teacher_predictions = self._teacher_test_logits(teacher, tokenizer, test.texts).argmax(axis=1)
            report["teacher"].update(classification_metrics(test.labels, teacher_predictions, num_labels))
        report["teacher"]["examples_per_s"] = throughput(
            lambda batch: teacher_logits(
                teacher, tokenizer, batch, config.batch_size, self.config.teacher.max_length, cpu
            ),
            speed_texts,
            config.batch_size,
            config.threads,
        )

        for name in ("student", "baseline_student"):
            directory = self.dir / name
            if not directory.exists():
                continue
            student = StudentClassifier.from_pretrained(directory)
            row: dict[str, Any] = {
                "arch": student.spec.arch,
                "init": student.info.get("init"),
                "params": student.num_parameters,
                "vocab_size": student.spec.vocab_size,
                "size_bytes": weights_size(directory),
            }
            if test:
                predictions = student.logits(test.texts, config.batch_size).argmax(axis=1)
                row.update(classification_metrics(test.labels, predictions, num_labels))
                row["teacher_agreement"] = float(np.mean(predictions == teacher_predictions))
            row["examples_per_s"] = throughput(
                lambda batch, s=student: s.logits(batch, config.batch_size),
                speed_texts,
                config.batch_size,
                config.threads,
            )
            report[name] = row

        transfer_summary = self.dir / "transfer" / "summary.json"
        transfer = read_json(transfer_summary) if transfer_summary.exists() else {"sources": [], "kept": 0}
        for source in transfer["sources"]:
            source.setdefault("note", None)
        report["transfer_set"] = {
            **transfer,
            "requested": sum(s["requested"] or 0 for s in transfer["sources"]),
            "generated": sum(s["generated"] for s in transfer["sources"]),
        }
        if "student" in report:
            report["ratios"] = {
                "params_teacher_over_student": report["teacher"]["params"] / report["student"]["params"],
                "size_teacher_over_student": report["teacher"]["size_bytes"] / max(report["student"]["size_bytes"], 1),
                "speed_student_over_teacher": report["student"]["examples_per_s"] / report["teacher"]["examples_per_s"],
            }
        report["speed"] = {
            "device": "cpu",
            "threads": config.threads or torch.get_num_threads(),
            "batch_size": config.batch_size,
            "examples": len(speed_texts),
        }
        stats = read_json(self.dir / "data" / "stats.json")
        report["data"] = {"truncated_texts": stats.get("truncated", 0), "pool": stats.get("pool")}
        report["stages"] = {
            name: {"seconds": record.get("seconds", 0.0)}
            for name, record in self.manifest["stages"].items()
            if record.get("status") in ("done", "skipped")
        }
        if not test:
            report["notes"].append("no test set: accuracy and macro-F1 were not measured")
        report["config_hash"] = self.config.section_hash("data", "teacher", "generator", "transfer", "student")
        write_json(self.dir / "report.json", report)
        write_text(self.dir / "report.md", render_markdown(report))
        return {key: report[key].get("accuracy") for key in ("teacher", "student", "baseline_student") if key in report}


def _brief(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in ("steps", "epochs", "best_validation_accuracy") if key in stats}
