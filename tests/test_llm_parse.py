"""Reading LLM answers: lists of texts, class answers, and soft labels from log-probabilities, pinned against answers
written as the OpenAI API reference shows them (chat `logprobs.content[].top_logprobs`, legacy completions
`logprobs.top_logprobs`), and against hand computations."""

import math

import numpy as np
import pytest

from gendistill.llm.parse import (
    choice_text,
    first_token_logprobs,
    logprob_soft_label,
    match_answer,
    match_token,
    parse_list,
    soft_label_logits,
    vote_soft_label,
)
from gendistill.llm.prompts import check_templates, default_messages, default_prompt, render, render_messages

VERBALIZERS = ["cooking", "sports", "weather"]


def test_numbered_list_with_preamble_quotes_and_trailing_comment():
    answer = (
        "Sure! Here are 4 texts about sports:\n\n"
        '1. "The team won the match in extra time."\n'
        "2) **A late goal sealed the season for the coach.**\n"
        "(3) “The league announced a new schedule.”\n"
        "4. \n"
        "I hope these help!"
    )
    parsed = parse_list(answer)
    assert parsed.texts == [
        "The team won the match in extra time.",
        "A late goal sealed the season for the coach.",
        "The league announced a new schedule.",
    ]
    assert parsed.dropped == {"preamble": 1, "empty_item": 1, "unparsable": 1}


def test_bullets_and_labelled_items():
    parsed = parse_list("- first text here\n* second one\n• third\nText 4: fourth text\n**5.** fifth")
    assert parsed.texts == ["first text here", "second one", "third", "fourth text", "fifth"]
    assert not parsed.dropped


def test_lines_without_markers_are_texts_and_a_colon_line_is_a_preamble():
    parsed = parse_list("Here you go:\nThe storm hit the coast.\n\n'Rain all week.'\n3.5 million people watched")
    assert parsed.texts == ["The storm hit the coast.", "Rain all week.", "3.5 million people watched"]
    assert parsed.dropped == {"preamble": 1}
    assert parse_list("One single text without a list").texts == ["One single text without a list"]
    assert parse_list("   \n").texts == []


def test_a_completion_continues_the_prompts_list_marker():
    # the prompt ended with "3." : the answer's first line is item 3
    parsed = parse_list("the oven was hot\n4. garlic sauce tonight\n\nExamples of", prefix="3. ")
    assert parsed.texts == ["the oven was hot", "garlic sauce tonight"]
    assert parsed.dropped == {"unparsable": 1}


def test_reasoning_blocks_are_skipped():
    assert parse_list("<think>they want sports\n1. no</think>\n1. A real text").texts == ["A real text"]
    assert match_answer("<think>maybe cooking</think> sports", VERBALIZERS) == 1


def test_choice_text_reads_both_apis():
    assert choice_text({"message": {"role": "assistant", "content": "hi"}}) == "hi"
    assert choice_text({"message": {"role": "assistant", "content": None}}) == ""
    assert choice_text({"text": " there", "index": 0}) == " there"


@pytest.mark.parametrize(
    ("token", "label"),
    [(" sports", 1), ("Sports", 1), ("Ġsports", 1), ("▁Weather", 2), ("sp", 1), ("co", 0), (" ", None), ("s", None)],
)
def test_a_first_token_counts_for_the_one_verbalizer_it_begins(token, label):
    verbalizers = ["cooking", "sports", "science"]  # "s" begins two of them: it tells them apart no better than nothing
    if token == "▁Weather":
        verbalizers = VERBALIZERS
    assert match_token(token, verbalizers) == label


@pytest.mark.parametrize(
    ("answer", "label"),
    [("sports", 1), (" Sports.", 1), ('"weather"', 2), ("Cooking\nbecause of the oven", 0), ("It is sports.", 1)],
)
def test_a_sampled_answer_names_a_class(answer, label):
    assert match_answer(answer, VERBALIZERS) == label


def test_an_answer_naming_no_class_or_two_is_no_vote():
    assert match_answer("I am not sure", VERBALIZERS) is None
    assert match_answer("sports or weather", VERBALIZERS) is None


# what the OpenAI API reference shows for a chat completion with logprobs=true, top_logprobs=3 (values ours)
CHAT_ANSWER = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": 1702685778,
    "model": "some-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "sports"},
            "logprobs": {
                "content": [
                    {
                        "token": "sports",
                        "logprob": -0.4,
                        "bytes": [115, 112, 111, 114, 116, 115],
                        "top_logprobs": [
                            {"token": "sports", "logprob": -0.4, "bytes": [115, 112, 111, 114, 116, 115]},
                            {"token": "Sports", "logprob": -1.9, "bytes": [83, 112, 111, 114, 116, 115]},
                            {"token": "weather", "logprob": -2.3, "bytes": [119, 101, 97, 116, 104, 101, 114]},
                            {"token": "The", "logprob": -3.0, "bytes": [84, 104, 101]},
                        ],
                    }
                ],
                "refusal": None,
            },
            "finish_reason": "length",
        }
    ],
    "usage": {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51},
}
# a legacy completion with logprobs=3, as the reference shows it
COMPLETION_ANSWER = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1,
    "model": "some-model",
    "choices": [
        {
            "text": " weather",
            "index": 0,
            "logprobs": {
                "tokens": [" weather"],
                "token_logprobs": [-0.2],
                "top_logprobs": [{" weather": -0.2, " cooking": -2.0, " rain": -3.5}],
                "text_offset": [120],
            },
            "finish_reason": "length",
        }
    ],
}


def test_chat_logprobs_give_renormalised_soft_labels_and_the_covered_mass():
    top = first_token_logprobs(CHAT_ANSWER["choices"][0])
    assert top == [("sports", -0.4), ("Sports", -1.9), ("weather", -2.3), ("The", -3.0)]
    probabilities, covered = logprob_soft_label(top, VERBALIZERS)
    sports, weather = math.exp(-0.4) + math.exp(-1.9), math.exp(-2.3)  # "The" names no class
    assert covered == pytest.approx(sports + weather)
    assert probabilities == pytest.approx([0.0, sports / (sports + weather), weather / (sports + weather)])
    logits = soft_label_logits(probabilities, 1e-4)
    assert logits == pytest.approx(np.log([1e-4, sports / (sports + weather), weather / (sports + weather)]), rel=1e-6)


def test_completion_logprobs_in_the_legacy_format():
    top = first_token_logprobs(COMPLETION_ANSWER["choices"][0])
    probabilities, covered = logprob_soft_label(top, VERBALIZERS)
    weather, cooking = math.exp(-0.2), math.exp(-2.0)
    assert covered == pytest.approx(weather + cooking)
    assert probabilities == pytest.approx([cooking / (weather + cooking), 0.0, weather / (weather + cooking)])


def test_no_logprobs_means_no_candidates_and_an_uncovered_text_is_uniform():
    assert first_token_logprobs({"message": {"content": "sports"}}) == []
    assert first_token_logprobs({"text": "x", "logprobs": None}) == []
    probabilities, covered = logprob_soft_label([("The", -0.1)], VERBALIZERS)
    assert covered == 0 and probabilities == pytest.approx([1 / 3] * 3)


def test_votes_are_smoothed_frequencies():
    assert vote_soft_label([1, 1, None, 2], 3, 0.5) == pytest.approx([0.5 / 4.5, 2.5 / 4.5, 1.5 / 4.5])
    assert vote_soft_label([None, None], 3, 0.0) == pytest.approx([1 / 3] * 3)
    assert vote_soft_label([0, 0], 2, 0.0) == pytest.approx([1.0, 0.0])


def test_default_templates_render_with_and_without_examples():
    variables = {
        "label": "sports",
        "description": "games and teams",
        "labels": ["cooking", "sports"],
        "descriptions": {"sports": "games and teams"},
        "examples": ["a late goal won it", "the coach left"],
        "count": 3,
        "attributes": {"tone": "angry"},
    }
    user = render_messages(default_messages("generate"), variables)[1]["content"]
    assert 'Write 3 new texts of the class "sports" (games and teams).' in user
    assert "Tone: angry." in user and "- a late goal won it\n- the coach left\n" in user
    prompt = render(default_prompt("generate"), variables)
    assert prompt.endswith("1. a late goal won it\n2. the coach left\n3.")
    zero = render(default_prompt("generate"), {**variables, "examples": [], "attributes": {}})
    assert zero.endswith('Texts of the class "sports" (games and teams):\n1.')
    annotate = {
        "text": "rain all day",
        "labels": ["cooking", "weather"],
        "verbalizers": ["cooking", "weather"],
        "descriptions": {"weather": "the sky"},
        "examples": [],
    }
    user = render_messages(default_messages("annotate"), annotate)[1]["content"]
    assert "- cooking\n- weather: the sky\n" in user and user.endswith("Text: rain all day\nClass:")


def test_a_template_error_is_one_line_naming_where():
    problem = check_templates([("teacher.prompt", "Text: {{ txt }}")], {"text": "x"})
    assert problem == "teacher.prompt: template error: 'txt' is undefined"
    problem = check_templates([("teacher.prompt", "{% if %}")], {})
    assert problem.startswith("teacher.prompt: template error (line 1):")
