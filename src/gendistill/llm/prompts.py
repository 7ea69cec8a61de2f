"""Prompt templates: Jinja2 (the language of chat templates), sandboxed, with undefined variables an error.

A chat template is a list of messages `{role, content}` whose contents are templates; a completion template is one
string. What each template sees:

generation (`llm` source): `label` (the class asked for), `description` (its description, or ""), `labels` (every
class name), `descriptions` (name -> description, for the classes that have one), `examples` (labeled texts of the
class, none in a zero-label start), `count` (texts asked for), `attributes` (attribute -> the value drawn for
this request, e.g. {"tone": "angry"}).

annotation (`llm` teacher): `text` (to classify), `labels`, `verbalizers` (the answer word per class, in label
order), `descriptions`, `examples` (few-shot: a list of {text, label, answer}).
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


class ChatMessage(Section):
    """One message of a chat template."""

    role: str = Field(description="system, user or assistant")
    content: str = Field(description="a Jinja2 template")


def default_messages(kind: str) -> list[ChatMessage]:
    system, user = (SYSTEM_GENERATE, USER_GENERATE) if kind == "generate" else (SYSTEM_ANNOTATE, USER_ANNOTATE)
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]


def default_prompt(kind: str) -> str:
    return COMPLETION_GENERATE if kind == "generate" else COMPLETION_ANNOTATE


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
