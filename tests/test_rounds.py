"""Agreement rounds: the student picks the candidates it is least sure of, the teacher labels only those, the
student continues from its weights; held-out teacher labels decide when to stop and which round is kept; a kill
mid-round loses nothing."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import TOPICS, cli_env, labeled, make_rows, make_tiny_config, train_tiny_student, write_jsonl

import gendistill
from gendistill.artifacts.resolve import identify
from gendistill.config import StudentConfig, build_config
from gendistill.errors import ConfigError
from gendistill.io import read_json
from gendistill.pipeline.layout import RunLayout
from gendistill.sections import key_payload
from gendistill.students.building import grow_student
from gendistill.students.selection import pick, power_ranks, uncertainty


def test_pick_takes_the_highest_scores_and_lets_each_predicted_class_take_turns():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    predicted = np.array([0, 0, 0, 1, 1, 2])
    assert pick(scores, predicted, 3, balance=False) == [0, 1, 2]
    # turn 1: each class's most uncertain (0, 3, 5); turn 2: the next of classes 0 and 1, surest cut last
    assert pick(scores, predicted, 3) == [0, 3, 5]
    assert pick(scores, predicted, 4) == [0, 3, 5, 1]
    assert sorted(pick(scores, predicted, 10)) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("power", [0.05, 1.0, 3.0])
def test_power_sampling_draws_in_proportion_to_score_to_the_power(power):
    scores = np.array([0.6, 0.3, 0.1, 0.0])
    predicted = np.zeros(4, dtype=int)
    rng = np.random.default_rng(0)
    draws = 20000
    firsts = np.bincount([pick(power_ranks(scores, power, rng), predicted, 1)[0] for _ in range(draws)], minlength=4)
    expected = scores**power / (scores**power).sum()
    assert firsts[3] == 0  # a score of 0 is never drawn while a positive one is left
    tolerance = 4 * np.sqrt(expected * (1 - expected) / draws) + 1e-9  # 4 standard errors
    np.testing.assert_array_less(np.abs(firsts / draws - expected), tolerance)
    # a batch is a draw without replacement: every text at most once, the zero last
    batch = pick(power_ranks(scores, power, rng), predicted, 4, balance=False)
    assert sorted(batch) == [0, 1, 2, 3] and batch[-1] == 3
    # seeded: the same keys for the same generator seed (a resumed round picks the same texts)
    np.testing.assert_array_equal(
        power_ranks(scores, power, np.random.default_rng(7)), power_ranks(scores, power, np.random.default_rng(7))
    )


def test_power_sampling_keeps_each_class_taking_turns():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    predicted = np.array([0, 0, 0, 1, 1, 2])
    for seed in range(20):
        chosen = pick(power_ranks(scores, 1.0, np.random.default_rng(seed)), predicted, 3)
        assert sorted(predicted[chosen]) == [0, 1, 2]  # one of each class in the first turn, whatever the draw


@pytest.mark.parametrize("select", ["margin", "entropy", "disagreement"])
def test_uncertainty_scores_a_coin_flip_above_a_clear_text(tiny_teacher_dir, select):
    student, _ = train_tiny_student("bilstm", "teacher", tiny_teacher_dir, epochs=40, learning_rate=1e-2)
    clear = labeled(20, 0)[0]  # the texts it learnt
    rng = np.random.default_rng(0)
    mixed = [  # two topics' words, half and half: a coin flip between two classes
        " ".join(rng.permutation([*rng.choice(TOPICS[a], 2, replace=False), *rng.choice(TOPICS[b], 2, replace=False)]))
        for a, b in [("weather", "cooking"), ("sports", "weather"), ("cooking", "sports")] * 4
    ]
    scores, predicted = uncertainty(student, clear + mixed, select, committee=6, seed=0)
    assert predicted.shape == (len(clear) + len(mixed),)
    assert np.median(scores[len(clear) :]) > np.median(scores[: len(clear)])
    again, _ = uncertainty(student, clear + mixed, select, committee=6, seed=0)
    np.testing.assert_allclose(scores, again)  # seeded: the same picks on a resumed run


@pytest.mark.parametrize("init", ["teacher", "random"])
def test_a_grown_student_continues_exactly_where_the_last_one_stopped(tiny_teacher_dir, init):
    student, _ = train_tiny_student("bilstm", init, tiny_teacher_dir)
    old_texts = labeled(20, 0)[0]
    new_texts = ["blizzard hailstorm typhoon monsoon", *labeled(5, 9)[0]]
    config = StudentConfig(arch="bilstm", init=init, embedding_dim=16, hidden_dim=16)
    grown = grow_student(
        student, config, old_texts + new_texts, seed=1, teacher_dir=tiny_teacher_dir, teacher_base=str(tiny_teacher_dir)
    )
    assert grown.spec.vocab_size >= student.spec.vocab_size
    # every text the old student could read gives the same logits: the same weights, row by row
    np.testing.assert_allclose(grown.logits(old_texts), student.logits(old_texts), rtol=1e-5, atol=1e-5)


def texts_of(path):
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def pool_file(tmp_path):
    return write_jsonl(tmp_path / "pool.jsonl", [{"text": row["text"]} for row in make_rows(60, 5)])


def rounds_config(task_dir, teacher_dir, tmp_path, **rounds):
    config = make_tiny_config(task_dir, teacher_dir)
    config["transfer"]["sources"] = [{"type": "file", "path": str(task_dir / "unlabeled.jsonl"), "n": 30}]
    config["student"]["baseline"] = False
    config["rounds"] = {
        "count": 2,
        "per_round": 12,
        "candidates": 40,
        "holdout": 24,
        "patience": 2,
        "min_gain": 0.0,
        "epochs": 2,
        "pool": {"type": "file", "path": str(pool_file(tmp_path))},
        **rounds,
    }
    return config


def test_rounds_end_to_end(tmp_path, task_dir, tiny_teacher_dir):
    config = build_config(rounds_config(task_dir, tiny_teacher_dir, tmp_path))
    run_dir = tmp_path / "run"
    report = gendistill.run(config, run_dir)
    layout = RunLayout(run_dir)
    ledger = read_json(layout.rounds_ledger)
    history = ledger["history"]
    assert [r["round"] for r in history] == [0, 1, 2]
    # labels: the 30 transfer texts + the 24 held-out ones, then 12 per round
    assert [r["labels"] for r in history] == [54, 66, 78] and ledger["labels"] == 78
    assert [r["picked"] for r in history] == [0, 12, 12]
    holdout = set(pq.read_table(layout.rounds / "holdout.parquet").column("text").to_pylist())
    transfer = {text for path in layout.transfer.rglob("shard-*.parquet") for text in texts_of(path)}
    picks = [set(texts_of(layout.rounds / f"round-0{r}" / "labels.parquet")) for r in (1, 2)]
    assert len(holdout) == 24 and all(len(p) == 12 for p in picks)
    assert not (holdout & transfer) and not (picks[0] & picks[1]) and not ((picks[0] | picks[1]) & (holdout | transfer))
    chosen = ledger["chosen_round"]
    assert history[chosen]["agreement"] == max(r["agreement"] for r in history)
    # the run's student is the kept round's: the report, the resolver and the export all read it
    assert layout.final_student == layout.rounds_student and layout.rounds_student.is_dir()
    assert identify(run_dir).folder == layout.rounds_student
    assert report.rounds is not None and [row.round for row in report.rounds.history] == [0, 1, 2]
    assert all(row.accuracy is not None for row in report.rounds.history)
    assert report.student.accuracy == pytest.approx(report.rounds.history[chosen].accuracy)
    assert "rounds" in report.plots
    assert "Agreement rounds" in layout.report_html.read_text() and "Agreement rounds" in layout.report_md.read_text()
    # a second run does nothing again; rounds.count: 0 retires the rounds and the one-shot student is the run's
    again = gendistill.run(config, run_dir)
    assert again.rounds == report.rounds
    off = build_config({**rounds_config(task_dir, tiny_teacher_dir, tmp_path), "rounds": {"count": 0}})
    plain = gendistill.run(off, run_dir, force=["changed"])
    assert plain.rounds is None and not layout.rounds.exists() and layout.final_student == layout.student


def test_power_sampling_picks_other_texts_from_the_same_candidates_and_keys_only_when_set(
    tmp_path, task_dir, tiny_teacher_dir
):
    def first_round(name, **rounds):
        raw = rounds_config(task_dir, tiny_teacher_dir, tmp_path, count=1, per_round=12, balance=False, **rounds)
        gendistill.run(build_config(raw), tmp_path / name)
        folder = tmp_path / name / "rounds" / "round-01"
        pool = {text for path in (folder / "pool").rglob("*.parquet") for text in texts_of(path)}
        return pq.read_table(folder / "picked.parquet").to_pydict(), pool

    top, top_pool = first_round("top")
    drawn, drawn_pool = first_round("power", sampling="power")
    assert top_pool == drawn_pool and set(drawn["text"]) <= drawn_pool  # the same candidates, the same student
    assert len(drawn["text"]) == 12 and set(drawn["text"]) != set(top["text"])
    # the recorded score stays the student's uncertainty: top took the 12 highest, the draw reached below them
    assert min(top["score"]) >= min(drawn["score"]) and sum(drawn["score"]) < sum(top["score"])

    def key(**rounds):
        raw = rounds_config(task_dir, tiny_teacher_dir, tmp_path, **rounds)
        return json.dumps(key_payload(build_config(raw).rounds), sort_keys=True, default=str)

    assert key(sampling="top", power=1.0) == key() != key(sampling="power")
    assert key(sampling="power", power=2.0) != key(sampling="power")


def test_rounds_stop_when_held_out_agreement_stops_rising(tmp_path, task_dir, tiny_teacher_dir):
    raw = rounds_config(task_dir, tiny_teacher_dir, tmp_path, count=5, patience=1, min_gain=1.0, select="entropy")
    gendistill.run(build_config(raw), tmp_path / "run")  # select as YAML gives it: a string
    ledger = read_json(RunLayout(tmp_path / "run").rounds_ledger)
    # a rise of 1.0 (from any agreement to above 100%) never happens: one round, then the stop
    assert ledger["rounds"] == 1 and ledger["chosen_round"] == 0 and "stopped after round 1" in ledger["stopped"]


def test_a_kill_mid_round_resumes_without_labeling_anything_twice(tmp_path, task_dir, tiny_teacher_dir):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(rounds_config(task_dir, tiny_teacher_dir, tmp_path)))
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "gendistill.cli", "run", str(config_path), "--run-dir", str(run_dir)]
    killed = subprocess.run(command, env=cli_env("rounds.labeled:2"), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    layout = RunLayout(run_dir)
    first = layout.rounds / "round-01"
    second = layout.rounds / "round-02"
    assert (first / "round.json").exists() and (second / "labels.parquet").exists()
    assert not (second / "round.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in [*first.rglob("*.parquet"), second / "labels.parquet"]}
    resumed = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # picks and labels of before the kill: untouched
    # the same result as a run never killed
    clean_dir = tmp_path / "clean"
    gendistill.run(build_config(yaml.safe_load(config_path.read_text())), clean_dir)
    resumed_history = read_json(layout.rounds_ledger)["history"]
    clean_history = read_json(RunLayout(clean_dir).rounds_ledger)["history"]
    assert [r["agreement"] for r in resumed_history] == [r["agreement"] for r in clean_history]
    for r in (1, 2):
        picked = pq.read_table(layout.rounds / f"round-0{r}" / "picked.parquet").column("text").to_pylist()
        clean = pq.read_table(clean_dir / "rounds" / f"round-0{r}" / "picked.parquet").column("text").to_pylist()
        assert picked == clean


def test_the_quickstart_retrieve_example_is_a_valid_config():
    root = Path(__file__).resolve().parents[1]
    config = gendistill.load_config(root / "examples" / "quickstart_retrieve.yaml")
    assert [source.type for source in config.transfer.sources] == ["generate", "retrieve"]
    assert config.transfer.sources[1].n == 500 and config.rounds.active()
    assert config.rounds.pool_source(config.transfer) is config.transfer.sources[0]


def test_rounds_without_any_pool_are_refused_at_preflight(tmp_path, task_dir, tiny_teacher_dir):
    config = rounds_config(task_dir, tiny_teacher_dir, tmp_path)
    config["transfer"]["sources"] = []
    del config["rounds"]["pool"]
    with pytest.raises(ConfigError, match=r"^rounds.pool: rounds need a source of candidate texts"):
        gendistill.run(build_config(config), tmp_path / "run")
    assert not (tmp_path / "run" / "teacher").exists()  # refused before any training


def test_an_llm_pool_is_prompted_with_the_texts_the_last_round_picked(
    tmp_path, task_dir, tiny_teacher_dir, tiny_chat_lm_dir, served_lm
):
    """Against `transformers serve`: round 2's requests show round 1's picks as the examples of their class, and
    the ledger counts the pool's requests and tokens."""
    import json
    import sqlite3

    config = rounds_config(task_dir, tiny_teacher_dir, tmp_path, per_round=4, candidates=8, holdout=20)
    config["rounds"]["pool"] = {
        "type": "llm",
        "endpoint": served_lm,
        "model": str(tiny_chat_lm_dir),
        "api": "chat",
        "texts_per_request": 2,
        "examples_per_request": 2,
        "max_tokens": 16,
        "max_concurrency": 4,
        "timeout": 60,
    }
    run_dir = tmp_path / "run"
    gendistill.run(build_config(config), run_dir)
    layout = RunLayout(run_dir)
    ledger = read_json(layout.rounds_ledger)
    assert [r["picked"] for r in ledger["history"]] == [0, 4, 4]
    assert ledger["pool_usage"]["requests"] > 0 and ledger["pool_usage"]["completion_tokens"] > 0
    assert f"the llm pool: {ledger['pool_usage']['requests']:,} requests" in layout.report_html.read_text()
    picked = set(texts_of(layout.rounds / "round-01" / "labels.parquet"))
    with sqlite3.connect(layout.llm_cache) as db:
        bodies = [json.loads(row[0]) for row in db.execute("SELECT request FROM answers")]
    examples = [  # the "- text" lines of each request's prompt: the examples it showed
        {line[2:] for message in body["messages"] for line in message["content"].splitlines() if line.startswith("- ")}
        for body in bodies
    ]
    showing_picks = [shown for shown in examples if shown & picked]
    assert showing_picks, "no request showed a text round 1 picked"
    assert all(shown <= picked for shown in showing_picks)  # a class's examples: its picks only
    labeled = set(texts_of(layout.split("train")))
    assert any(shown and shown <= labeled for shown in examples)  # the holdout and round 1: the labeled texts
