"""kill -9 of the real CLI while a `retrieve` source embeds its corpus: the rerun embeds only the rows not done yet
and keeps the same texts as a run never killed (issue 21: "a kill -9 during embedding resumes without re-embedding
what was done")."""

import json
import random
import subprocess
import sys

import pytest
import yaml
from conftest import cli_env, make_rows, make_tiny_config, write_jsonl

from gendistill.data.corpus_embeddings import BLOCK_ROWS
from gendistill.pipeline.layout import RunLayout
from gendistill.sources.base import read_shard

pytest.importorskip("faiss")


def transfer_texts(run_dir):
    shards = sorted(RunLayout(run_dir).transfer.rglob("shard-*.parquet"))  # one folder per source
    return [text for path in shards for text in read_shard(path)[0]]


def retrieve_details(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (source,) = manifest["stages"]["transfer"]["summary"]["sources"]
    return source["details"]


def test_kill_during_embedding_resumes_without_embedding_a_row_twice(tmp_path, task_dir, tiny_teacher_dir):
    # more than two embedding blocks, so the kill after the first block leaves work done and work to do
    rows = [{"body": row["text"]} for row in make_rows(2 * BLOCK_ROWS // 3 + 300, 11)]
    random.Random(0).shuffle(rows)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    config = make_tiny_config(task_dir, tiny_teacher_dir)
    config["transfer"]["sources"] = [
        {"type": "retrieve", "corpus": str(corpus), "text_column": "body", "n": 30, "per_query": 20}
    ]
    config["student"]["init"] = "random"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    def run(run_dir, cache, kill_at=None):
        env = {**cli_env(kill_at), "GENDISTILL_RETRIEVE_CACHE": str(cache)}
        command = [sys.executable, "-m", "gendistill.cli", "run", str(config_path), "--run-dir", str(run_dir)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    killed = run(run_dir, cache, "retrieve.embed:1")
    assert killed.returncode == -9, killed.stderr[-2000:]
    (folder,) = cache.iterdir()
    assert json.loads((folder / "meta.json").read_text())["done"] == BLOCK_ROWS  # one block recorded, then killed

    resumed = run(run_dir, cache)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    total = len(rows)
    details = retrieve_details(run_dir)
    assert details["embedded_reused"] == BLOCK_ROWS and details["embedded_now"] == total - BLOCK_ROWS

    clean = run(tmp_path / "clean", tmp_path / "clean-cache")
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert retrieve_details(tmp_path / "clean")["embedded_now"] == total
    assert transfer_texts(run_dir) == transfer_texts(tmp_path / "clean") and len(transfer_texts(run_dir)) == 30
