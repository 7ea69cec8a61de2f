"""Tiny student classifiers, their architectures, tokenizers and teacher-initialized embeddings."""

from gendistill.students.architectures import ARCHITECTURES, StudentNetwork, StudentSpec
from gendistill.students.classifier import StudentClassifier
from gendistill.students.vocab import StudentTokenizer

__all__ = ["ARCHITECTURES", "StudentClassifier", "StudentNetwork", "StudentSpec", "StudentTokenizer"]
