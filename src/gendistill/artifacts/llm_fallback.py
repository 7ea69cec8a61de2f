"""The cascade's LLM fallback (`gendistill serve EXPORT --min-confidence P --fallback URL --fallback-model NAME`):
an OpenAI-compatible LLM asked through the `llm` teacher's own code (artifacts.cascade has the protocol and the
gendistill-server fallback). A module of its own because the llm teacher pulls in the training code (torch), which
a deployment serving a cascade to a gendistill fallback need not install."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from gendistill.artifacts.cascade import FallbackError, FallbackUnavailable, one_line
from gendistill.artifacts.limits import DEFAULT_FALLBACK_TIMEOUT
from gendistill.errors import ConfigError, GendistillError
from gendistill.llm.client import LLMServerError, RequestFailed, check_server
from gendistill.teachers.llm import PROBE_TEXT, LLMTeacher
from gendistill.training.finetune import FitContext


class LLMFallback:
    """An OpenAI-compatible LLM at `url` serving `model`, asked through the `llm` teacher: an `LLMTeacher` config
    with that endpoint and model and the student's label names as classes (zero-shot, verbalizer = label name).

    At start it prepares the teacher as the teacher stage would (`LLMTeacher.fit`'s probes: does the server give
    log-probabilities, does it honour `n`), which is also the tiny request that proves the endpoint answers. The
    teacher's request cache lives in `cache_dir` (a temporary folder by default), so a text asked twice is asked
    once. A text whose soft label is uniform (no answer, or no candidate token, named a class) is a failure for
    that text alone (None): the LLM gave no label the student knows."""

    def __init__(
        self,
        url: str,
        model: str,
        student_labels: Sequence[str],
        *,
        timeout: float = DEFAULT_FALLBACK_TIMEOUT,
        cache_dir: Path | None = None,
    ):
        self.url, self.student_labels = url.rstrip("/"), list(student_labels)
        self._failures: tuple[type[BaseException], ...] = (GendistillError, httpx.HTTPError)
        try:
            self.config = LLMTeacher(endpoint=self.url, model=model, timeout=timeout, max_retries=1)
        except ValueError as error:
            raise FallbackUnavailable(f"--fallback {url} --fallback-model {model}: {error}") from None
        # the teacher keeps its state (teacher.json) in a folder and its cache beside it, as in a run directory
        self._tmp = None if cache_dir is not None else tempfile.TemporaryDirectory(prefix="gendistill-cascade-")
        root = Path(cache_dir) if cache_dir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.directory = root / "teacher"
        try:
            self._prepare(model)
            self.teacher = self.config.load(self.directory, "cpu")
            # one text through the whole path (prompt, request, parsing): a probe the fit may have let fail (a
            # server refusing logprobs or `n` is fine there) must succeed here, e.g. a model name the server lacks
            self.teacher.logits([PROBE_TEXT], 1)
        except ConfigError as error:  # e.g. two label names that begin alike, which no answer could tell apart
            raise FallbackUnavailable(f"--fallback {url} --fallback-model {model}: {one_line(error)}") from None
        except (LLMServerError, RequestFailed, httpx.HTTPError) as error:
            raise FallbackUnavailable(
                f"--fallback {url} --fallback-model {model}: the LLM did not answer a probe request "
                f"({one_line(error)}); start the server or fix the URL and model name"
            ) from None

    def _prepare(self, model: str) -> None:
        check_server(self.config, "--fallback")
        context = FitContext(  # a zero-shot teacher reads no labeled text, checkpoint or accelerator
            train=_NoTexts(),  # type: ignore[arg-type]
            label_names=self.student_labels,
            out_dir=self.directory,
            checkpoint_dir=self.directory,
            accelerator=None,  # type: ignore[arg-type]
            seed=0,
        )
        self.config.fit(context)

    def classify(self, texts: list[str]) -> list[str | None]:
        try:
            logits = self.teacher.logits(list(texts), len(texts))
        except self._failures as error:
            raise FallbackError(f"fallback {self.url}: {one_line(error)}") from None
        return [None if np.allclose(row, row[0]) else self.student_labels[int(row.argmax())] for row in logits]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class _NoTexts:
    """The labeled set of a zero-shot fallback: no texts, so no few-shot examples."""

    texts: list[str] = []
    labels: list[int] = []
