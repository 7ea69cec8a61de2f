"""Prompt templates: Jinja2 (the language of chat templates), sandboxed, with undefined variables an error.

A chat template is a list of messages `{role, content}` whose contents are templates; a completion template is one
string. What each template sees:

generation (`llm` source): `label` (the class asked for), `description` (its description, or ""), `labels` (every
class name), `descriptions` (name -> description, for the classes that have one), `examples` (labeled texts of the
class, none in a zero-label start), `count` (texts asked for), `attributes` (attribute -> the value drawn for
this request, e.g. {"tone": "angry"}), `multi_label` (false), `label_set` ([label]).

annotation (`llm` teacher): `text` (to classify), `labels`, `verbalizers` (the answer word per class, in label
order), `descriptions`, `examples` (few-shot: a list of {text, label, answer}), `multi_label` (false).

In a multi-label task (each text any number of labels) both have their own default templates (`*_MULTI`), and the
variables change meaning where one label became several: generation's `label_set` is the set of label names asked
for together, `label` their names joined with ", ", `description` "" (each label's is in `descriptions`),
`examples` labeled texts carrying at least one of them; annotation's `examples` answers are the labels joined with
", " (or "none"), and the model is asked for every label that applies, comma-separated, or "none". `multi_label`
is true in both, so one custom template can serve both kinds of task.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import Field

from gendistill.sections import Section

SYSTEM_GENERATE = (
    "You write realistic, varied example texts for a text-classification dataset. Answer with a numbered list of "
    "texts and nothing else."
)
USER_GENERATE = """\
The dataset's classes are: {{ labels | join(", ") }}.
Write {{ count }} new texts of the class "{{ label }}"{% if description %} ({{ description }}){% endif %}.
{% for name, value in attributes.items() %}{{ name | capitalize }}: {{ value }}.
{% endfor %}{% if examples %}Examples of texts of this class:
{% for example in examples %}- {{ example }}
{% endfor %}{% endif %}Write one text per line as a numbered list (1., 2., ...), without quotes or comments."""
COMPLETION_GENERATE = """\
Texts of the class "{{ label }}"{% if description %} ({{ description }}){% endif %}\
{% for name, value in attributes.items() %}, {{ name }}: {{ value }}{% endfor %}:
{% for example in examples %}{{ loop.index }}. {{ example }}
{% endfor %}{{ examples | length + 1 }}."""

SYSTEM_ANNOTATE = "You are a careful annotator for a text-classification task. Answer with the class name only."
USER_ANNOTATE = """\
Classify the text into one of these classes:
{% for label in labels %}- {{ verbalizers[loop.index0] }}\
{% if descriptions.get(label) %}: {{ descriptions[label] }}{% endif %}
{% endfor %}{% if examples %}
Examples:
{% for example in examples %}Text: {{ example.text }}
Class: {{ example.answer }}
{% endfor %}{% endif %}
Text: {{ text }}
Class:"""
COMPLETION_ANNOTATE = """\
Classify each text into one of these classes: {{ verbalizers | join(", ") }}.
{% for example in examples %}
Text: {{ example.text }}
Class: {{ example.answer }}
{% endfor %}
Text: {{ text }}
Class:"""

SYSTEM_GENERATE_MULTI = (
    "You write realistic, varied example texts for a multi-label text-classification dataset, where a text can "
    "carry several labels at once. Answer with a numbered list of texts and nothing else."
)
USER_GENERATE_MULTI = """\
The dataset's labels are: {{ labels | join(", ") }}; a text can carry any number of them.
Write {{ count }} new texts that each carry {% if label_set | length > 1 %}all of these labels at once{% else %}\
the label{% endif %}, and no other label of the dataset:
{% for name in label_set %}- {{ name }}{% if descriptions.get(name) %}: {{ descriptions[name] }}{% endif %}
{% endfor %}{% for name, value in attributes.items() %}{{ name | capitalize }}: {{ value }}.
{% endfor %}{% if examples %}Examples of labeled texts that carry some of these labels:
{% for example in examples %}- {{ example }}
{% endfor %}{% endif %}Write one text per line as a numbered list (1., 2., ...), without quotes or comments."""
COMPLETION_GENERATE_MULTI = """\
Texts with the labels "{{ label_set | join('", "') }}"\
{% for name, value in attributes.items() %}, {{ name }}: {{ value }}{% endfor %}:
{% for example in examples %}{{ loop.index }}. {{ example }}
{% endfor %}{{ examples | length + 1 }}."""

SYSTEM_ANNOTATE_MULTI = (
    "You are a careful annotator for a multi-label text-classification task. Answer with the names of every label "
    "that applies, separated by commas, or with none, and nothing else."
)
USER_ANNOTATE_MULTI = """\
Tag the text with every one of these labels that applies (any number of them, or none):
{% for label in labels %}- {{ verbalizers[loop.index0] }}\
{% if descriptions.get(label) %}: {{ descriptions[label] }}{% endif %}
{% endfor %}{% if examples %}
Examples:
{% for example in examples %}Text: {{ example.text }}
Labels: {{ example.answer }}
{% endfor %}{% endif %}
Answer with the labels that apply, separated by commas, or "none" if no label applies.
Text: {{ text }}
Labels:"""
COMPLETION_ANNOTATE_MULTI = """\
Tag each text with every label that applies, separated by commas ("none" if no label applies). Labels: \
{{ verbalizers | join(", ") }}.
{% for example in examples %}
Text: {{ example.text }}
Labels: {{ example.answer }}
{% endfor %}
Text: {{ text }}
Labels:"""

_CHAT = {
    ("generate", False): (SYSTEM_GENERATE, USER_GENERATE),
    ("generate", True): (SYSTEM_GENERATE_MULTI, USER_GENERATE_MULTI),
    ("annotate", False): (SYSTEM_ANNOTATE, USER_ANNOTATE),
    ("annotate", True): (SYSTEM_ANNOTATE_MULTI, USER_ANNOTATE_MULTI),
}
_COMPLETION = {
    ("generate", False): COMPLETION_GENERATE,
    ("generate", True): COMPLETION_GENERATE_MULTI,
    ("annotate", False): COMPLETION_ANNOTATE,
    ("annotate", True): COMPLETION_ANNOTATE_MULTI,
}


class ChatMessage(Section):
    """One message of a chat template."""

    role: str = Field(description="system, user or assistant")
    content: str = Field(description="a Jinja2 template")


def default_messages(kind: str, multi_label: bool = False) -> list[ChatMessage]:
    system, user = _CHAT[kind, multi_label]
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]


def default_prompt(kind: str, multi_label: bool = False) -> str:
    return _COMPLETION[kind, multi_label]


@lru_cache(maxsize=64)
def _compile(source: str) -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    return environment.from_string(source)


def render(source: str, variables: dict[str, Any]) -> str:
    return _compile(source).render(**variables)


def render_messages(messages: list[ChatMessage], variables: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": message.role, "content": render(message.content, variables)} for message in messages]


def check_templates(sources: list[tuple[str, str]], variables: dict[str, Any]) -> str | None:
    """Render each (where, template) with sample `variables`; the first problem as one line, or None."""
    from jinja2 import TemplateError

    for where, source in sources:
        try:
            render(source, variables)
        except TemplateError as error:
            line = getattr(error, "lineno", None)
            at = f" (line {line})" if line else ""
            return f"{where}: template error{at}: {error.message or type(error).__name__}"
    return None
