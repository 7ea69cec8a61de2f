"""Torch-free prediction with an exported student: numpy, tokenizers and onnxruntime only.

This module is what a deployment imports, so it must never pull in torch or transformers (nor any gendistill
module that does). The export folder holds model.onnx (which takes the tokenizer's raw ids and applies the
student's id map and padding rules inside the graph), tokenizer.json, labels.json and metadata.json, and
calibration.json when the run fitted a temperature on a held-out split (applied to every probability here).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from gendistill.artifacts.calibration import Calibration, CalibrationError, check_min_confidence, read_calibration
from gendistill.artifacts.resolve import (
    EXPORT_FILES,
    FORMAT,
    FORMAT_VERSION,
    LABELS_FILE,
    METADATA_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    resolve_model_dir,
)
from gendistill.artifacts.word_cache import DEFAULT_CACHE_BYTES, CachedWordTokenizer
from gendistill.data.texts import as_texts, require_words
from gendistill.errors import ExportDirError
from gendistill.evaluation.multilabel import check_thresholds

PAD_ID = 0


# A recurrent graph pays per time step, so length-sorted groups of 16 (less padding, fewer steps for the short
# ones) ran 1.6x faster than one batch of 64 on ag_news.
RECURRENT_GROUP = 16
# Exports written before metadata.json said whether the graph is `recurrent` name only their `arch`; of the
# architectures of that time, these were the recurrent ones.
RECURRENT_BEFORE_THE_KEY = ("bilstm",)
# Fewer texts than this per thread are run by the calling thread alone: a share must outweigh the handoff.
MIN_SHARE = 8


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportDirError(f"{path}: cannot read ({error})") from None


class Predictor:
    """Texts in, labels/probabilities/logits out, from an export folder made by `gendistill export`.

    `threads` (default: the cores this process may use) is how many shares of a call's texts run at once, each
    on its own one-thread onnxruntime session: the students' ops are too small for intra-op threads to pay
    (measured, quickstart BiLSTM, 2 cores: one session with 2 intra-op threads 31k examples/s, two one-thread
    shares 37k). `word_cache_bytes` bounds the tokenizer's per-word id cache (CachedWordTokenizer), which lives as
    long as the predictor: in a server, for its whole life.
    """

    def __init__(
        self,
        directory: str | Path,
        threads: int | None = None,
        word_cache_bytes: int = DEFAULT_CACHE_BYTES,
        *,
        model_file: str = MODEL_FILE,
    ):
        """`model_file`: another graph of the same export folder than model.onnx (the export measures its fp32
        intermediate this way before deleting it)."""
        self.directory = Path(directory)
        missing = [name for name in EXPORT_FILES if not (self.directory / name).is_file()]
        if missing:
            raise ExportDirError(
                f"{self.directory}: not a gendistill ONNX export ({', '.join(missing)} missing); "
                "make one with `gendistill export RUN_DIR --format onnx --out DIR`"
            )
        self.metadata: dict[str, Any] = _read_json(self.directory / METADATA_FILE)
        labels = _read_json(self.directory / LABELS_FILE)
        if not isinstance(self.metadata, dict):
            raise ExportDirError(f"{self.directory / METADATA_FILE}: expected a JSON object; re-export the student")
        if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
            raise ExportDirError(f"{self.directory / LABELS_FILE}: expected a JSON list of label names; re-export")
        self.label_names: list[str] = labels
        version = self.metadata.get("format_version")
        if self.metadata.get("format") != FORMAT or not isinstance(version, int) or version > FORMAT_VERSION:
            raise ExportDirError(
                f"{self.directory}: metadata.json is not a {FORMAT} v{FORMAT_VERSION} export "
                f"(format={self.metadata.get('format')!r}, version={version!r}); re-export it"
            )
        try:
            self.max_length = int(self.metadata["max_length"])
            self.min_length = int(self.metadata["min_length"])
            self.empty_id = int(self.metadata["empty_id"])
        except (KeyError, TypeError, ValueError) as error:
            raise ExportDirError(f"{self.directory}: metadata.json lacks a valid {error}; re-export it") from None
        try:
            self.tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER_FILE))
        except Exception as error:  # tokenizers raises a bare Exception on bad files
            raise ExportDirError(f"{self.directory / TOKENIZER_FILE}: cannot load ({error})") from None
        try:
            self.calibration: Calibration | None = read_calibration(self.directory)
        except CalibrationError as error:
            raise ExportDirError(f"{error}; re-export the student") from None
        # a multi-label export answers each label as a yes/no question (sigmoid), each at its own threshold
        self.multi_label = bool(self.metadata.get("multi_label", False))
        self.thresholds: list[float] | None = None
        if self.multi_label:
            try:
                where = f"{self.directory / METADATA_FILE} thresholds"
                self.thresholds = check_thresholds(self.metadata.get("thresholds") or [], len(labels), where)
            except (TypeError, ValueError) as error:
                raise ExportDirError(f"{error}; re-export the student") from None
        self.words = CachedWordTokenizer(self.tokenizer, self.max_length, word_cache_bytes)
        self.recurrent = bool(self.metadata.get("recurrent", self.metadata.get("arch") in RECURRENT_BEFORE_THE_KEY))
        self.threads = threads or default_threads()
        self._pool = ThreadPoolExecutor(self.threads - 1, "gendistill-predict") if self.threads > 1 else None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            # one session per thread: two threads sharing one session ran 10% slower than with their own
            self.sessions = [
                ort.InferenceSession(str(self.directory / model_file), options, providers=["CPUExecutionProvider"])
                for _ in range(self.threads)
            ]
        except Exception as error:  # onnxruntime raises its own exception types on invalid models
            raise ExportDirError(f"{self.directory / model_file}: cannot load ({error})") from None
        outputs = self.sessions[0].get_outputs()[0].shape
        if isinstance(outputs[-1], int) and outputs[-1] != len(self.label_names):
            raise ExportDirError(
                f"{self.directory / LABELS_FILE}: {len(self.label_names)} label names for a model with "
                f"{outputs[-1]} outputs; the export folder is inconsistent: re-export the student"
            )

    @classmethod
    def from_pretrained(
        cls,
        id_or_path: str | Path,
        threads: int | None = None,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
    ) -> Predictor:
        """A Predictor for an export folder or a Hub repo holding one (fetched through the Hugging Face cache;
        HF_HUB_OFFLINE=1 reads the cache alone). Needs huggingface_hub for Hub ids."""
        directory = resolve_model_dir(
            id_or_path,
            "ONNX export",
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        return cls(directory, threads)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Raw tokenizer ids per text, as the student saw them in training: no special tokens, truncated to
        max_length; a text with no token gets one id that the graph maps to [UNK]."""
        texts = as_texts(texts)
        return [ids[: self.max_length] or [self.empty_id] for ids in self.words.token_ids(texts)]

    def _pad(self, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Right-pad with [PAD]=0 in one vectorized step (a per-row Python loop cost as much as the bag model)."""
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        width = max(int(lengths.max()), self.min_length)
        flat = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum()))
        matrix = np.full((len(sequences), width), PAD_ID, dtype=np.int64)
        matrix[np.arange(width)[None, :] < lengths[:, None]] = flat
        return matrix, lengths

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Logits [len(texts), labels] in input order, for any text: an empty one gets the logits of the [UNK]
        id the export maps it to (what the export checks compare with torch). predict and predict_proba refuse it.

        With several threads, each takes a contiguous share of the texts and tokenizes, sorts and runs it on its
        own session, so one share's tokenization (which holds the GIL) overlaps another's onnxruntime run (which
        does not). Within a share, texts run in length-sorted groups to waste little on padding; the students are
        exact under padding, so this changes no result.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        texts = as_texts(texts)  # a bare string is a TypeError here as in every predict path
        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        shares = min(self.threads, len(texts) // MIN_SHARE) if self._pool is not None else 1
        bounds = [len(texts) * k // max(shares, 1) for k in range(max(shares, 1) + 1)]
        futures = [
            self._pool.submit(self._run_share, self.sessions[k], texts, bounds[k], bounds[k + 1], batch_size, out)
            for k in range(1, shares)
        ]
        self._run_share(self.sessions[0], texts, bounds[0], bounds[1], batch_size, out)
        for future in futures:
            future.result()
        return out

    def _run_share(
        self,
        session: ort.InferenceSession,
        texts: list[str],
        start: int,
        stop: int,
        batch_size: int,
        out: np.ndarray,
    ) -> None:
        sequences = self.token_ids(texts[start:stop])
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        step = min(batch_size, RECURRENT_GROUP) if self.recurrent else batch_size
        for first in range(0, len(order), step):
            chunk = order[first : first + step]
            ids, lengths = self._pad([sequences[i] for i in chunk])
            out[[start + i for i in chunk]] = session.run(["logits"], {"ids": ids, "lengths": lengths})[0]

    @property
    def temperature(self) -> float:
        """The calibration temperature the probabilities are divided by (1.0 without calibration.json)."""
        return self.calibration.temperature if self.calibration is not None else 1.0

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, calibrated: bool = True) -> np.ndarray:
        """softmax(logits / T) with the stored temperature T (calibrated=False, or no calibration.json: T = 1),
        [len(texts), labels]. An empty or whitespace-only text is an EmptyTextError (a ValueError) naming its
        index: it has nothing to classify, and its label would only be the student's prior."""
        if self.multi_label:  # one independent probability per label: a row need not sum to 1
            return 1.0 / (1.0 + np.exp(-self.logits(require_words(as_texts(texts)), batch_size).astype(np.float64)))
        logits = self.logits(require_words(as_texts(texts)), batch_size) / (self.temperature if calibrated else 1.0)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(
        self, texts: Sequence[str], batch_size: int = 64, min_confidence: float | None = None
    ) -> list[str | None] | list[list[str]]:
        """Labels (a multi-label export: the list of labels that apply to each text, possibly empty); with
        `min_confidence` (in (0, 1)), None in place of the label of a text whose calibrated top
        probability is below it (the caller defers it). `self.calibration.min_confidence` is the threshold the run
        chose on held-out data for its target accuracy, when it stored one. An empty or whitespace-only text is an
        EmptyTextError, as in predict_proba."""
        texts = require_words(as_texts(texts))
        if self.multi_label:  # the labels that apply to each text, each deciding at its own threshold
            if min_confidence is not None:
                raise ValueError(
                    "min_confidence is for single-label exports; a multi-label one has per-label thresholds"
                )
            decisions = self.predict_proba(texts, batch_size) >= np.asarray(self.thresholds)
            return [[self.label_names[i] for i in np.flatnonzero(row)] for row in decisions]
        if min_confidence is None:
            return [self.label_names[i] for i in self.logits(texts, batch_size).argmax(axis=1)]
        threshold = check_min_confidence(min_confidence)
        return [
            self.label_names[int(row.argmax())] if row.max() >= threshold else None
            for row in self.predict_proba(texts, batch_size)
        ]
