"""Tiny student classifiers, their tokenizers and their teacher-initialized embeddings."""

from gendistill.students.classifier import StudentClassifier
from gendistill.students.models import ARCHITECTURES, StudentSpec, build_student, count_parameters
from gendistill.students.vocab import StudentTokenizer

__all__ = ["ARCHITECTURES", "StudentClassifier", "StudentSpec", "StudentTokenizer", "build_student", "count_parameters"]
