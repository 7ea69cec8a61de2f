"""The `llm` teacher and the `llm` source in a multi-label task, against a scripted fake OpenAI server on 127.0.0.1
whose every answer the test chooses (fast, deterministic): label-set answers parsed (unknown names, "none",
repeats, case and spacing), per-label vote probabilities pinned to hand-computed numbers, the request cache (no
request paid twice, and none shared with a single-label prompt), label sets drawn from the labeled rows, the
preflight, and a whole multi-label run with a report in micro-F1."""

import json
import random
import re
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import FILLER, TOPICS, write_jsonl
from llm_servers import FakeOpenAI

from gendistill import Run
from gendistill.config import FilterConfig, build_config
from gendistill.data.task import LabeledSet, TaskData
from gendistill.errors import ConfigError, DataError
from gendistill.io import read_json
from gendistill.llm.client import Request
from gendistill.llm.parse import label_vote_probabilities, parse_label_set, probability_logits
from gendistill.pipeline.layout import RunLayout
from gendistill.sources.base import SourceContext, TextFilter, list_shards
from gendistill.sources.llm import label_set_plan, requested_set_agreement
from gendistill.stages.data import check_data
from gendistill.teachers import FitContext
from gendistill.teachers.llm import few_shot_label_sets

LABELS = ["cooking", "sports", "weather"]


# ---- parsing and votes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "labels", "unknown"),
    [
        ("sports, weather", [1, 2], []),
        ("  Weather ,SPORTS  ", [1, 2], []),  # case and spacing
        ("sports, sports, Sports.", [1], []),  # a repeat counts once
        ("sports, banana, weather", [1, 2], ["banana"]),  # an unknown name is ignored and counted
        ("none", [], []),
        ("None.", [], []),
        ("No label", [], []),
        ("sports; none", [1], []),  # "none" beside a label: the label wins
        ("sports and weather", [1, 2], []),
        ("- cooking\n- weather", [0, 2], []),
        ("<think>sports?</think>cooking", [0], []),
        ("weather|cooking", [0, 2], []),
        ("I cannot tell", None, ["i cannot tell"]),  # names nothing: no vote
        ("", None, []),
    ],
)
def test_a_label_set_answer_is_read_into_labels_and_unknown_names(answer, labels, unknown):
    parsed = parse_label_set(answer, LABELS)
    assert parsed.labels == labels and parsed.unknown == unknown


def test_a_verbalizer_of_several_words_is_one_label_not_two():
    verbalizers = ["food and drink", "sports", "weather"]
    assert parse_label_set("Food  and Drink, weather", verbalizers).labels == [0, 2]
    assert parse_label_set("sports and weather", verbalizers).labels == [1, 2]


def test_per_label_votes_are_smoothed_shares_and_their_logits_give_them_back():
    votes = [[1, 2], [1], [], [1], None]  # four valid answers, one that named nothing
    probabilities = label_vote_probabilities(votes, 3, smoothing=0.5)
    np.testing.assert_allclose(probabilities, [0.5 / 5, 3.5 / 5, 1.5 / 5])
    logits = probability_logits(probabilities, 1e-4)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), probabilities, rtol=1e-6)
    # no smoothing: unanimous answers are clipped to the floor, never an infinite logit
    bare = probability_logits(label_vote_probabilities([[0], [0]], 3, smoothing=0.0), 1e-4)
    np.testing.assert_allclose(bare, [np.log(0.9999 / 1e-4), np.log(1e-4 / 0.9999), np.log(1e-4 / 0.9999)], rtol=1e-5)
    np.testing.assert_allclose(label_vote_probabilities([None], 2, smoothing=0.0), [0.5, 0.5])


def test_multi_label_few_shot_examples_cover_every_label_and_none():
    texts = ["t0", "t1", "t2", "t3", "t4"]
    label_sets = [[0, 1], [1], [2], [], [0]]
    examples = few_shot_label_sets(texts, label_sets, LABELS, ["food", "sports", "sky"], 1, seed=0)
    answers = {example["text"]: example["answer"] for example in examples}
    assert len(examples) == len(answers)  # each text once
    assert answers["t2"] == "sky" and answers["t3"] == "none"
    assert any(answers.get(text) in ("food, sports", "food") for text in ("t0", "t4"))
    assert {example["label"] for example in examples if example["text"] == "t3"} == {"none"}
    for example in examples:
        assert (
            example["answer"]
            == ", ".join(["food", "sports", "sky"][y] for y in label_sets[texts.index(example["text"])])
            or "none"
        )


# ---- the teacher against a scripted server ------------------------------------------------------------------------
SCRIPT = {  # text -> its four sampled answers
    "goal in the rain": ["sports, weather", "Sports", "none", " SPORTS ,banana, sports"],
    "a quiet afternoon": ["none", "None.", "no idea", "cooking"],
    "garlic sauce": ["cooking", "cooking, cooking", "cooking and weather", "<think>hm</think>cooking"],
    "team dinner": ["sports; cooking", "sports, cooking, golf", "I cannot tell", ""],
}
TEXTS = list(SCRIPT)
# by hand, (answers naming the label + 0.5) / (valid answers + 2 x 0.5), labels cooking, sports, weather
EXPECTED = [
    [0.5 / 5, 3.5 / 5, 1.5 / 5],  # 4 valid answers (banana ignored)
    [1.5 / 4, 0.5 / 4, 0.5 / 4],  # 3 valid ("no idea" is no vote)
    [4.5 / 5, 0.5 / 5, 1.5 / 5],
    [2.5 / 3, 2.5 / 3, 0.5 / 3],  # 2 valid ("I cannot tell" and "" are no votes)
]


def annotation_text(prompt):
    """The text a multi-label annotation prompt asks about (prompts end with "Text: ...\\nLabels:")."""
    if not prompt.rstrip().endswith("Labels:"):
        return None
    return prompt.rstrip().rsplit("Text:", 1)[-1].rsplit("Labels:", 1)[0].strip()


def scripted(prompt, body, choices):
    text = annotation_text(prompt)
    if text is None:
        return None
    return SCRIPT.get(text, ["none"] * choices)[:choices]


def teacher_config(url, **fields):
    raw = {"data": {"train": "unused.jsonl"}, "teacher": {"kind": "llm", "endpoint": url, "model": "fake", **fields}}
    return build_config(raw).teacher


def fit(config, tmp_path, train=None, multi_label=True):
    train = train or LabeledSet([], [])
    out = tmp_path / "run" / "teacher"
    ctx = FitContext(train, LABELS, out, tmp_path / "run" / "checkpoints", None, 0, {}, multi_label=multi_label)
    stats = config.fit(ctx)
    return stats, config.load(out, "cpu")


def probabilities_of(logits):
    return 1 / (1 + np.exp(-logits.astype(np.float64)))


def test_per_label_probabilities_are_the_votes_of_the_sampled_answers(tmp_path):
    with FakeOpenAI(script=scripted) as fake:
        stats, teacher = fit(teacher_config(fake.url, samples=4, smoothing=0.5), tmp_path)
        logits = teacher.logits(TEXTS, 8)
        requests = list(fake.requests)
    assert stats["soft_labels"] == "samples" and stats["n_supported"] is True
    assert "multi-label" in stats["why"]
    np.testing.assert_allclose(probabilities_of(logits), EXPECTED, rtol=1e-5)
    bodies = [request["body"] for request in requests]
    assert len(bodies) == 1 + len(TEXTS)  # the probe of `n`, then one request per text: no logprobs probe
    assert all("logprobs" not in body for body in bodies) and all(body["n"] == 4 for body in bodies[1:])
    # requests go out concurrently: their order is not the texts' order
    prompts = [body["messages"][1]["content"] for body in bodies[1:]]
    prompt = next(prompt for prompt in prompts if annotation_text(prompt) == "goal in the rain")
    assert "- cooking\n- sports\n- weather\n" in prompt
    assert 'Answer with the labels that apply, separated by commas, or "none" if no label applies.' in prompt
    assert prompt.endswith("Text: goal in the rain\nLabels:")
    row = teacher.describe()
    assert (row["soft_labels"], row["unmatched_answers"], row["unknown_labels"]) == ("samples", 3, 4)
    assert "per-label smoothed votes of 4 sampled answers" in row["notes"][0]
    assert "3 of 16 answers named no label" in row["notes"][0]


def test_the_completion_prompt_asks_for_every_label_that_applies(tmp_path):
    train = LabeledSet(["goal in the rain", "a quiet afternoon"], [[1, 2], []])
    with FakeOpenAI(script=scripted) as fake:
        _, teacher = fit(teacher_config(fake.url, api="completions", samples=2, shots=1), tmp_path, train)
        teacher.logits(["garlic sauce"], 8)
        prompt = fake.requests[-1]["body"]["prompt"]
    assert prompt.startswith('Tag each text with every label that applies, separated by commas ("none" if no label')
    assert "Labels: cooking, sports, weather.\n" in prompt
    assert "Text: goal in the rain\nLabels: sports, weather\n" in prompt
    assert "Text: a quiet afternoon\nLabels: none\n" in prompt
    assert prompt.endswith("Text: garlic sauce\nLabels:")


def test_a_rerun_and_a_resumed_labeling_repeat_no_request(tmp_path):
    with FakeOpenAI(script=scripted) as fake:
        _, teacher = fit(teacher_config(fake.url, samples=4), tmp_path)
        first = teacher.logits(TEXTS[:2], 8)  # interrupted after two texts
        sent = len(fake.requests)
        resumed = teacher.config.load(tmp_path / "run" / "teacher", "cpu").logits(TEXTS, 8)
        assert len(fake.requests) == sent + 2  # only the two texts never answered
        again = teacher.logits(TEXTS, 8)
        assert len(fake.requests) == sent + 2
    np.testing.assert_array_equal(resumed[:2], first)
    np.testing.assert_array_equal(again, resumed)
    usage = read_json(tmp_path / "run" / "teacher" / "usage.json")
    assert (usage["requests"], usage["cached"], usage["texts"]) == (4, 2 + 4, 2 + 4 + 4)


def test_a_multi_label_prompt_never_reuses_a_single_label_answer(tmp_path):
    """With a custom template the two kinds of task send the very same body; the multi-label request is still
    asked again (its answer is read as a label set), not taken from the cache."""
    messages = [{"role": "user", "content": "Text: {{ text }}\nLabels:"}]
    with FakeOpenAI(script=lambda prompt, body, choices: ["sports"] * choices) as fake:
        config = teacher_config(fake.url, messages=messages, logprobs="no", samples=2)
        _, teacher = fit(config, tmp_path, multi_label=False)
        teacher.logits(["goal in the rain"], 8)
        sent = len(fake.requests)
        _, teacher = fit(config, tmp_path, multi_label=True)
        logits = teacher.logits(["goal in the rain"], 8)
        assert len(fake.requests) == sent * 2  # the probe and the text, asked again
        assert [r["body"] for r in fake.requests[sent:]] == [r["body"] for r in fake.requests[:sent]]
    np.testing.assert_allclose(probabilities_of(logits[0]), [0.5 / 3, 2.5 / 3, 0.5 / 3], rtol=1e-5)
    body = {"model": "m", "messages": []}
    assert Request("chat/completions", body, scope="multi_label").key != Request("chat/completions", body).key


def test_multi_label_teacher_mistakes_are_one_line_errors():
    config = teacher_config("http://127.0.0.1:9", logprobs="yes")
    with pytest.raises(ConfigError, match="teacher.logprobs: yes, but the task is multi-label") as error:
        config.check_multi_label(LABELS)
    assert "\n" not in str(error.value)
    config = teacher_config("http://127.0.0.1:9", verbalizers={"cooking": "food, drink"})
    with pytest.raises(ConfigError, match="'food, drink' of 'cooking' holds ',', which separates the labels"):
        config.check_multi_label(LABELS)
    config = teacher_config("http://127.0.0.1:9", verbalizers={"cooking": "None"})
    with pytest.raises(ConfigError, match="'None' of 'cooking' reads as 'no label applies'"):
        config.check_multi_label(LABELS)
    # first tokens do not matter to votes: "sport" and "sports" are told apart as whole answers
    teacher_config("http://x", verbalizers={"cooking": "sport"}).check_multi_label(LABELS)


# ---- the source ---------------------------------------------------------------------------------------------------
ROWS = [  # the labeled rows of the source tests: five label sets, one row with none
    ("goal and rain today", [1, 2]),
    ("pasta in the oven", [0]),
    ("the match was great", [1]),
    ("snow and wind all day", [2]),
    ("a team picnic with sauce", [0, 1]),
    ("nothing to see", []),
]
ROW_SETS = {tuple(labels) for _, labels in ROWS if labels}
GENERATE = re.compile(r"and no other label of the dataset:\n((?:- .*\n)+)")
EXAMPLES = re.compile(r"Examples of labeled texts that carry some of these labels:\n((?:- .*\n)+)")


def requested_names(prompt):
    """The label names a multi-label generation prompt asks for (None for any other prompt)."""
    found = GENERATE.search(prompt)
    return None if found is None else [line[2:].split(":")[0] for line in found.group(1).splitlines()]


def write_texts(prompt, body, choices):
    """Generation: two texts that use two words of every requested topic; annotation: the topics whose words the
    text uses (what a perfect annotator would say)."""
    names = requested_names(prompt)
    if names is not None:
        count = int(re.search(r"Write (\d+) new texts", prompt).group(1))
        rng = random.Random(json.dumps(body, sort_keys=True))
        lines = []
        for i in range(count):
            words = [word for name in names for word in rng.sample(TOPICS[name], 2)] + rng.sample(FILLER, 3)
            rng.shuffle(words)
            lines.append(f"{i + 1}. {' '.join(words)}")
        return ["Here are the texts:\n" + "\n".join(lines)] * choices
    text = annotation_text(prompt)
    if text is None:
        return None
    present = [name for name in LABELS if any(word in text.split() for word in TOPICS[name])]
    return [", ".join(present) or "none"] * choices


def source_context(run_dir, spec, shard_size=10, rows=ROWS):
    raw = {"data": {"train": "unused.jsonl"}, "teacher": {"model": "unused"}}
    config = build_config({**raw, "transfer": {"shard_size": shard_size, "sources": [spec]}})
    texts, labels = [text for text, _ in rows], [labels for _, labels in rows]
    task = TaskData(LabeledSet(texts, labels), None, None, LABELS, multi_label=True)
    layout = RunLayout(run_dir)
    directory = layout.transfer / "00-llm"
    directory.mkdir(parents=True, exist_ok=True)
    text_filter = TextFilter(FilterConfig(min_words=1), set(texts))
    source = config.transfer.sources[0]
    return source, SourceContext(config, layout, task, 0, directory, text_filter, torch.device("cpu"))


def generation_prompts(server):
    prompts = [request["body"]["messages"][1]["content"] for request in server.requests]
    return [prompt for prompt in prompts if requested_names(prompt) is not None]


def test_the_source_asks_for_the_labeled_rows_own_label_sets_naming_every_label(tmp_path):
    spec = {"type": "llm", "endpoint": "", "model": "fake", "n": 20, "texts_per_request": 2, "examples_per_request": 2}
    with FakeOpenAI(script=write_texts) as fake:
        source, ctx = source_context(tmp_path, {**spec, "endpoint": fake.url})
        source.build(ctx)
        prompts = generation_prompts(fake)
        rows = [row for path in list_shards(ctx.directory) for row in pq.read_table(path).to_pylist()]
        sent = len(fake.requests)
        for path in list_shards(ctx.directory)[1:]:  # a crash after the first shard
            path.unlink()
        source, ctx = source_context(tmp_path, {**spec, "endpoint": fake.url})
        resumed = source.build(ctx)
        assert len(fake.requests) == sent  # every answer came from the request cache
        assert [row for path in list_shards(ctx.directory) for row in pq.read_table(path).to_pylist()] == rows
        assert resumed.kept == 20 and resumed.details["cached"] == 5
    assert len(prompts) == 10  # 2 shards x 5 requests: two passes over the 5 labeled label sets
    asked = Counter(tuple(LABELS.index(name) for name in requested_names(prompt)) for prompt in prompts)
    assert asked == dict.fromkeys(ROW_SETS, 2)  # every set as often as rows carry it, never (0, 2) or (0, 1, 2)
    texts_by_labels = {text: set(labels) for text, labels in ROWS}
    for prompt in prompts:
        names = requested_names(prompt)
        wanted = {LABELS.index(name) for name in names}
        assert f"The dataset's labels are: {', '.join(LABELS)}" in prompt
        shown = [line[2:] for line in EXAMPLES.search(prompt).group(1).splitlines()]
        assert len(shown) == 2 and all(texts_by_labels[text] & wanted for text in shown)
        assert ("all of these labels at once" in prompt) == (len(names) > 1)
    assert len(rows) == 20
    for row in rows:  # each text keeps the label set it was asked for
        assert tuple(row["requested_label"]) in ROW_SETS
        used = {LABELS.index(n) for n in LABELS if any(w in row["text"].split() for w in TOPICS[n])}
        assert used == set(row["requested_label"])


def test_the_completion_prompt_of_the_source_names_the_set(tmp_path):
    spec = {"type": "llm", "model": "fake", "n": 2, "texts_per_request": 2, "api": "completions"}
    with FakeOpenAI(script=lambda prompt, body, n: ["1. a b c\n2. d e f"] * n) as fake:
        source, ctx = source_context(tmp_path, {**spec, "endpoint": fake.url}, shard_size=2, rows=ROWS[:1])
        source.build(ctx)
        prompt = fake.requests[0]["body"]["prompt"]
    assert prompt == 'Texts with the labels "sports", "weather":\n1. goal and rain today\n2.'


def test_a_source_with_no_labeled_set_to_ask_for_is_one_line():
    with pytest.raises(DataError, match=r"transfer.sources\[0\] \(llm\): the task is multi-label and no labeled row"):
        label_set_plan([[], []], "0", "transfer.sources[0] (llm)")
    plan = label_set_plan([[0, 1], [], [2], [0, 1]], "7", "x")
    assert sorted(plan) == [(0, 1), (0, 1), (2,)]


def test_the_agreement_with_the_teacher_counts_requested_labels_it_gives():
    requested = [[0, 1], [1], [2]]
    given = np.array([[True, False, False], [False, True, True], [False, False, True]])
    agreement = requested_set_agreement(requested, given, LABELS)
    assert agreement == {
        "multi_label": True,
        "overall": 0.75,  # 3 of the 4 requested (text, label) pairs
        "exact": 0.3333,  # only the third text got exactly its set
        "texts": 3,
        "per_class": {"cooking": 1.0, "sports": 0.5, "weather": 1.0},
    }


# ---- preflight and the whole pipeline -------------------------------------------------------------------------------
def test_preflight_accepts_llm_plugins_in_a_multi_label_task(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": text, "label": labels} for text, labels in ROWS])
    llm = {"endpoint": "http://127.0.0.1:9/v1", "model": "m"}
    sections = {
        "data": {"train": str(train), "label_names": LABELS},
        "teacher": {"kind": "llm", **llm},
        "transfer": {"sources": [{"type": "llm", "n": 4, **llm}]},
    }
    check_data(build_config(sections))
    with pytest.raises(ConfigError, match=r"^teacher.logprobs: yes, but the task is multi-label"):
        check_data(build_config({**sections, "teacher": {**sections["teacher"], "logprobs": "yes"}}))
    retrieve = {"sources": [{"type": "retrieve", "corpus": "unused.jsonl", "n": 4}]}
    with pytest.raises(ConfigError, match=r"transfer.sources\[0\] \(retrieve\) picks texts per single class"):
        check_data(build_config({**sections, "transfer": retrieve}))


def tagged(n, seed):
    """Rows with the words of one or two topics, or none (an empty list: no label applies)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        chosen = sorted(rng.sample(LABELS, rng.choice([0, 1, 1, 2])))
        words = [word for name in chosen for word in rng.sample(TOPICS[name], 2)] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": chosen})
    return rows


def test_a_multi_label_run_with_the_llm_teacher_and_source_reports_micro_f1(tmp_path):
    data = tmp_path / "data"
    with FakeOpenAI(script=write_texts) as fake:
        llm = {"endpoint": fake.url, "model": "fake"}
        raw = {
            "data": {
                "train": str(write_jsonl(data / "train.jsonl", tagged(24, 0))),
                "validation": str(write_jsonl(data / "validation.jsonl", tagged(16, 1))),
                "test": str(write_jsonl(data / "test.jsonl", tagged(16, 2))),
            },
            "teacher": {"kind": "llm", **llm, "samples": 2, "shots": 1},
            "transfer": {
                "sources": [{"type": "llm", **llm, "n": 48, "texts_per_request": 4}],
                "shard_size": 16,
                "filters": {"min_words": 1},
            },
            "student": {
                "arch": "bilstm",
                "init": "random",
                "embedding_dim": 16,
                "epochs": 20,
                "batch_size": 16,
                "learning_rate": 1e-2,
                "baseline": False,
            },
            "evaluate": {"speed_examples": 8, "speed_min_seconds": 0},
            "device": "cpu",
        }
        report = Run(build_config(raw), tmp_path / "run").run()
    assert report.multi_label is True
    teacher, student = report.teacher, report.student
    assert teacher.kind == "llm" and teacher.soft_labels == "samples" and teacher.accuracy is None
    assert teacher.micro_f1 == 1.0 and teacher.subset_accuracy == 1.0  # the scripted annotator is always right
    assert teacher.unmatched_answers == 0 and teacher.unknown_labels == 0
    assert student.micro_f1 is not None and 0.6 <= student.micro_f1 <= 1.0  # 0.82 here; untrained: about 0.35
    source = report.transfer_set.sources[0]
    assert source.kept == 48
    agreement = source.details["requested_label_agreement"]
    assert agreement["multi_label"] is True and agreement["overall"] == 1.0 and agreement["exact"] == 1.0
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["teacher"]["micro_f1"] == 1.0 and saved["student"]["micro_f1"] == student.micro_f1
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "| model | micro-F1 | macro-F1 | subset accuracy | Hamming loss |" in markdown
    assert "the teacher gives 100.0% of the labels requested for its 48 texts" in " ".join(report.notes)
