"""A student architecture is a plugin: one registered here, in this file alone, is configured, distilled, exported
(fp32 and int8) and served by the torch-free Predictor like the built-in ones, with nothing else knowing its name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import LABELS, labeled
from torch import nn

from gendistill.artifacts.export import export_onnx
from gendistill.artifacts.inference import Predictor
from gendistill.config import StudentConfig
from gendistill.runtime import make_accelerator
from gendistill.students.architectures import ARCHITECTURES, StudentNetwork, StudentSpec
from gendistill.students.building import make_student
from gendistill.students.example_store import ExampleStore
from gendistill.students.trainer import train_student


class MeanEmbeddingStudent(StudentNetwork):
    """The smallest student there is: the mean of the token embeddings, then one linear layer."""

    def __init__(self, spec: StudentSpec):
        super().__init__(spec)
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim, padding_idx=0)
        self.classifier = nn.Linear(spec.embedding_dim, spec.num_labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).float()
        total = (self.embedding(ids) * mask[:, :, None]).sum(dim=1)
        return self.classifier(total / lengths[:, None].clamp(min=1).float())


ARCHITECTURES.register("mean_embedding")(MeanEmbeddingStudent)


def teacher_logits(gold: list[int]) -> np.ndarray:
    """Confident soft labels from the gold ones, with noise: what a good teacher gives."""
    noise = np.random.default_rng(0).normal(scale=0.5, size=(len(gold), len(LABELS)))
    return (4.0 * np.eye(len(LABELS))[gold] + noise).astype(np.float32)


@pytest.mark.parametrize("init", ["random", "teacher"])
def test_a_registered_architecture_distills_exports_and_serves(init, tiny_teacher_dir, tmp_path):
    texts, gold = labeled(20, 0)
    config = StudentConfig(
        arch="mean_embedding", init=init, embedding_dim=16, epochs=15, batch_size=8, learning_rate=5e-3
    )
    student = make_student(config, texts, LABELS, 0, teacher_dir=tiny_teacher_dir, teacher_base=str(tiny_teacher_dir))
    assert isinstance(student.model, MeanEmbeddingStudent)
    store = ExampleStore.build(
        tmp_path / "examples", [(texts, teacher_logits(gold), gold)], student.tokenizer.encode, len(LABELS)
    )
    stats = train_student(student, store, config, make_accelerator("cpu", "no", 0), seed=0)
    assert stats["steps"] == 15 * 8

    student.save_pretrained(tmp_path / "student")
    test_texts, test_gold = labeled(10, 1)
    assert np.mean(student.logits(test_texts).argmax(axis=1) == np.asarray(test_gold)) >= 0.9  # no near-ties
    probe = [""] + test_texts + ["storm", "zebra unicorn quasar", " ".join(texts[:6])]
    expected = student.predict_proba(probe)
    for quantize, tolerance in ((None, 1e-5), ("int8", 0.01)):  # int8 moved them by 0.002 when this was written
        predictor = Predictor(export_onnx(tmp_path / "student", tmp_path / f"onnx-{quantize}", quantize=quantize))
        assert predictor.metadata["arch"] == "mean_embedding" and predictor.metadata["recurrent"] is False
        # softmax of the logits: predict_proba refuses the empty probe text, which the graph must still handle
        np.testing.assert_allclose(softmax(predictor.logits(probe)), expected, atol=tolerance)
        np.testing.assert_allclose(softmax(predictor.logits(probe, batch_size=1)), expected, atol=tolerance)
        np.testing.assert_allclose(predictor.predict_proba(probe[1:]), expected[1:], atol=tolerance)
        assert predictor.predict(test_texts) == student.predict(test_texts)


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)
