"""The `llm` teacher against a fake OpenAI-compatible server on 127.0.0.1: soft labels from first-token logprobs
(chat and legacy completions formats) pinned against a hand computation, the sampling fallback when a server ignores
or refuses logprobs (with and without `n`), verbalizers, and what it reports. The real `transformers serve` path
is in test_llm_e2e.py; llama.cpp's server (real logprobs) in test_llm_llamacpp.py (slow)."""

import math

import numpy as np
import pytest
from llm_servers import FakeOpenAI, fake_top_logprobs, topic_of

from gendistill.config import build_config
from gendistill.data.task import LabeledSet
from gendistill.errors import ConfigError
from gendistill.io import read_json
from gendistill.teachers import FitContext

LABELS = ["cooking", "sports", "weather"]
TEXTS = ["the team scored a goal", "rain and wind all day", "garlic sauce in the oven", "a new coach this season"]


def teacher_config(url, **fields):
    raw = {"data": {"train": "unused.jsonl"}, "teacher": {"kind": "llm", "endpoint": url, "model": "fake", **fields}}
    return build_config(raw).teacher


def fit(config, tmp_path, train=None, descriptions=None):
    train = train or LabeledSet([], [])
    out = tmp_path / "run" / "teacher"
    ctx = FitContext(train, LABELS, out, tmp_path / "run" / "checkpoints", None, 0, descriptions or {})
    stats = config.fit(ctx)
    return stats, config.load(out, "cpu")


def by_hand(text, verbalizers=LABELS, floor=1e-4):
    """The soft label from fake_top_logprobs, computed from its definition: each candidate token counts for the
    one class whose verbalizer it begins; shares of the covered mass; log with a floor."""
    mass = dict.fromkeys(verbalizers, 0.0)
    for token, logprob in fake_top_logprobs(text):
        word = token.strip().lower()
        owners = [v for v in verbalizers if word and v.startswith(word)]
        if len(owners) == 1:
            mass[owners[0]] += math.exp(logprob)
    covered = sum(mass.values())
    return np.log([max(mass[v] / covered, floor) for v in verbalizers]), covered


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_logprob_soft_labels_match_a_hand_computation(tmp_path, api):
    with FakeOpenAI() as fake:
        stats, teacher = fit(teacher_config(fake.url, api=api), tmp_path)
        assert stats["soft_labels"] == "logprobs"
        logits = teacher.logits(TEXTS, 8)
        bodies = [r["body"] for r in fake.requests[1:]]
    expected = [by_hand(text) for text in TEXTS]
    np.testing.assert_allclose(logits, [row for row, _ in expected], rtol=1e-5)
    assert [LABELS[i] for i in logits.argmax(axis=1)] == [topic_of(text) for text in TEXTS]
    assert all(body["max_tokens"] == 1 for body in bodies)
    if api == "chat":
        assert all(body["logprobs"] is True and body["top_logprobs"] == 20 for body in bodies)
    else:
        assert all(body["logprobs"] == 20 for body in bodies)
    row = teacher.describe()
    assert row["soft_labels"] == "logprobs" and row["params"] is None and row["size_bytes"] is None
    assert row["covered_mass"] == pytest.approx(np.mean([covered for _, covered in expected]), abs=1e-4)
    assert row["requests"] == 4 and row["texts_labeled"] == 4 and row["examples_per_s"] > 0
    assert "first-token log-probabilities" in row["notes"][0]


def test_a_server_that_ignores_logprobs_gets_sampled_votes_with_n(tmp_path):
    with FakeOpenAI(logprobs=False) as fake:
        stats, teacher = fit(teacher_config(fake.url, samples=4, smoothing=1.0), tmp_path)
        assert stats == {**stats, "soft_labels": "samples", "n_supported": True}
        assert "no log-probabilities" in stats["why"]
        logits = teacher.logits(TEXTS, 8)
        bodies = [r["body"] for r in fake.requests[2:]]
    assert len(bodies) == len(TEXTS) and all(body["n"] == 4 and "logprobs" not in body for body in bodies)
    probabilities = np.exp(logits)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    # each row is (votes + 1) / (4 + 3): multiples of 1/7
    np.testing.assert_allclose(probabilities * 7, np.round(probabilities * 7), atol=1e-4)
    assert teacher.describe()["soft_labels"] == "samples"


def test_a_server_that_refuses_logprobs_and_ignores_n_gets_one_request_per_sample(tmp_path):
    with FakeOpenAI(reject_logprobs=True, n=False) as fake:
        stats, teacher = fit(teacher_config(fake.url, samples=3), tmp_path)
        assert stats["soft_labels"] == "samples" and stats["n_supported"] is False
        assert "HTTP 422" in stats["why"]
        teacher.logits(TEXTS, 8)
        bodies = [r["body"] for r in fake.requests[2:]]
    assert len(bodies) == 3 * len(TEXTS) and len({body["seed"] for body in bodies}) == 12
    assert read_json(tmp_path / "run" / "teacher" / "usage.json")["answers"] == 12


def test_logprobs_yes_on_a_server_without_them_is_a_one_line_error(tmp_path):
    with FakeOpenAI(logprobs=False) as fake, pytest.raises(ConfigError, match="teacher.logprobs: yes, but fake at"):
        fit(teacher_config(fake.url, logprobs="yes"), tmp_path)


def test_few_shot_examples_descriptions_and_verbalizers_reach_the_prompt(tmp_path):
    train = LabeledSet(["bake the pasta", "goal for the team", "snow storm", "flour and spice"], [0, 1, 2, 0])
    with FakeOpenAI() as fake:
        config = teacher_config(fake.url, shots=1, verbalizers={"cooking": "food"})
        _, teacher = fit(config, tmp_path, train, descriptions={"weather": "rain, sun and wind"})
        teacher.logits(["the recipe needs garlic"], 8)
        prompt = fake.requests[-1]["body"]["messages"][1]["content"]
    assert "- food\n- sports\n- weather: rain, sun and wind\n" in prompt
    assert "Class: food\n" in prompt and "Text: goal for the team\nClass: sports\n" in prompt
    assert prompt.endswith("Text: the recipe needs garlic\nClass:")


def test_verbalizer_mistakes_are_one_line_errors(tmp_path):
    config = teacher_config("http://127.0.0.1:9", verbalizers={"cooknig": "food"})
    with pytest.raises(ConfigError, match=r"teacher.verbalizers: 'cooknig' is not a class name \(classes: cooking"):
        config.verbalizer_list(LABELS)
    config = teacher_config("http://127.0.0.1:9", verbalizers={"cooking": "sport", "sports": "sports"})
    with pytest.raises(ConfigError, match="'sport' .cooking. and 'sports' .sports. begin alike"):
        config.verbalizer_list(LABELS)
    assert teacher_config("http://x", verbalizers={"cooking": "sport"}, logprobs="no").verbalizer_list(LABELS)


def test_labeling_twice_asks_the_server_once(tmp_path):
    with FakeOpenAI() as fake:
        _, teacher = fit(teacher_config(fake.url), tmp_path)
        first = teacher.logits(TEXTS, 8)
        sent = len(fake.requests)
        np.testing.assert_array_equal(teacher.logits(TEXTS, 8), first)
        assert len(fake.requests) == sent
    usage = read_json(tmp_path / "run" / "teacher" / "usage.json")
    assert (usage["requests"], usage["cached"], usage["texts"], usage["texts_sent"]) == (4, 4, 8, 4)
