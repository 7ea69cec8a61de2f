"""The config fields of a served LLM, shared by the `llm` source and the `llm` teacher.

What the server is asked (the model, the API, prompts and sampling settings) is keyed: changing it reruns what it
feeds. How it is reached and how hard it is pushed (the endpoint, the API-key variable, concurrency, timeouts,
retries) are knobs: a server moved to another address, or a faster one, reruns nothing. The API key itself is
never a config value: `api_key_env` names the environment variable that holds it, and only that name is written
to config.yaml, the manifest or the report.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gendistill.io import register_secret
from gendistill.llm.prompts import ChatMessage, default_messages, default_prompt
from gendistill.sections import Section, knob

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HIDDEN_VALUE_ERROR = "value_not_shown"  # an error type whose input the config error message must not echo


class ServedModel(Section):
    """An OpenAI-compatible endpoint and the model it serves, with the prompt templates for `template_task`."""

    template_task: ClassVar[str] = "generate"  # which default templates apply: generate (source), annotate (teacher)
    messages: list[ChatMessage] | None = Field(
        default=None, description="chat template (api: chat): messages whose contents are Jinja2 templates"
    )
    prompt: str | None = Field(default=None, description="completion template (api: completions), Jinja2")

    endpoint: str = knob(
        ...,
        description="base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 (a URL with no path "
        "gets /v1); a knob: the model is identified by `model`",
    )
    model: str = Field(description="the model name the server expects in requests (e.g. what `vllm serve` loaded)")
    api: Literal["chat", "completions"] = Field(
        default="chat", description="chat: /chat/completions with messages; completions: /completions with a prompt"
    )
    api_key_env: str | None = knob(
        None, description="name of the environment variable holding the API key (sent as a Bearer token)"
    )
    max_concurrency: Annotated[int, Field(ge=1, le=1024)] = knob(8, description="requests in flight at once")
    timeout: Annotated[float, Field(gt=0)] = knob(120.0, description="seconds to wait for one answer")
    max_retries: Annotated[int, Field(ge=0, le=100)] = knob(
        6, description="retries of a request (429, 5xx, timeouts, dropped connections, malformed answers)"
    )
    retry_backoff: Annotated[float, Field(ge=0)] = knob(
        0.5, description="first retry delay in seconds, doubled per retry (with jitter, at most 60 s)"
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="server-specific request fields sent as given (e.g. {top_k: 50} for vLLM); keyed",
    )

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http(s) URL such as http://127.0.0.1:8000/v1")
        path = parts.path.rstrip("/") or "/v1"
        return f"{parts.scheme}://{parts.netloc}{path}"

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.fullmatch(value):
            # never echo the value: a user who pasted the key itself here must not see it printed or logged
            raise PydanticCustomError(
                HIDDEN_VALUE_ERROR,
                "must name an environment variable (letters, digits and _, e.g. OPENAI_API_KEY), not hold the key "
                "itself; put the key in that variable",
            )
        return value

    def api_key(self) -> str | None:
        """The key from the environment (None when no variable is named)."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        register_secret(key)  # from here on, no file, log line or error of this process shows it
        return key

    @model_validator(mode="after")
    def _template_fits_api(self) -> ServedModel:
        if self.api == "chat" and self.prompt is not None:
            raise ValueError("`prompt` is the completion template: set api: completions, or give `messages`")
        if self.api == "completions" and self.messages is not None:
            raise ValueError("`messages` is the chat template: set api: chat, or give `prompt`")
        return self

    def chat_template(self, multi_label: bool = False) -> list[ChatMessage]:
        """The user's `messages`, or the default for the task (`multi_label`: the one that asks for label sets)."""
        return self.messages if self.messages is not None else default_messages(self.template_task, multi_label)

    def completion_template(self, multi_label: bool = False) -> str:
        return self.prompt if self.prompt is not None else default_prompt(self.template_task, multi_label)
